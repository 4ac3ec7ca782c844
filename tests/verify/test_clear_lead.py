"""`verify` on `encrypt-vod --clear-lead` packages (both segmenters, cenc and cbcs, HLS fMP4 and
DASH), and on real packages patched so that an encrypted fragment lost its senc or a later
fragment points at the clear sample entry (negative controls)."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from speke_packager.cli import main as cli_main
from speke_packager.verify import verify_package
from speke_packager.verify.boxes import Box, iter_boxes
from tests.e2e.packages import KEY, KEYS, KID, WRONG_KEYS

VARIANTS = [(scheme, seg) for scheme in ("cenc", "cbcs") for seg in ("native", "ffmpeg")]
IDS = [f"{s}-{g}" for s, g in VARIANTS]


@pytest.fixture(scope="module")
def clear_lead(tmp_path_factory: pytest.TempPathFactory,
               media: Callable[[str], Path]) -> tuple[dict[str, Path], Path]:
    """scheme-segmenter -> package (HLS fMP4 + DASH, 2 s segments, first 2 s clear); source."""
    src = media("h264-aac-mp4")
    root = tmp_path_factory.mktemp("verify-clear-lead")
    out: dict[str, Path] = {}
    for scheme, seg in VARIANTS:
        dst = root / f"{scheme}-{seg}"
        rc = cli_main(["encrypt-vod", str(src), "--output", str(dst), "--scheme", scheme,
                       "--format", "both", "--segment-duration", "2", "--clear-lead", "2",
                       "--segmenter", seg, "--key", f"{KID.hex}:{KEY.hex()}",
                       "--key-uri", "k.bin", "--quiet", "--jobs", "1"])
        assert rc == 0
        out[dst.name] = dst
    return out, src


def _media(report: object) -> list[object]:
    return [r for r in report.renditions  # type: ignore[attr-defined]
            if r.name != "hls:session-keys"]


def _check(rendition: object, name: str) -> object:
    found = [c for c in rendition.checks if c.name == name]  # type: ignore[attr-defined]
    assert len(found) == 1, rendition
    return found[0]


def _boxes(buf: bytes, box: Box) -> dict[str, Box]:
    return {b.type: b for b in iter_boxes(buf, box.body, box.end, box.path)}


def _has_senc(seg: Path) -> bool:
    buf = seg.read_bytes()
    moof = next(b for b in iter_boxes(buf) if b.type == "moof")
    return "senc" in _boxes(buf, _boxes(buf, moof)["traf"])


@pytest.mark.parametrize("name", IDS)
def test_clear_lead_package_passes(clear_lead: tuple[dict[str, Path], Path], name: str) -> None:
    """Every rendition passes; the senc line counts the clear lead; the clear lead really is
    clear (no senc) and the rest encrypted; FFmpeg decrypts all frames to the source's."""
    pkgs, src = clear_lead
    pkg = pkgs[name]
    for rep in ("0", "1"):
        segs = sorted((pkg / rep).glob("segment_*.m4s"))
        flags = [_has_senc(s) for s in segs]  # a clear run, then encrypted to the end
        assert not flags[0] and flags[-1] and flags == sorted(flags), flags
    report = verify_package(pkg, src, keys=KEYS, fetch_key_uris=False)
    assert report.ok, report.to_json()
    media = _media(report)
    assert {r.name.split(":")[0] for r in media} == {"hls", "dash"}  # type: ignore[attr-defined]
    kinds = set()
    for r in media:
        senc = _check(r, "senc")
        assert senc.ok and " clear lead, " in senc.detail, senc  # type: ignore[attr-defined]
        n_clear = int(senc.detail.split(": ")[1].split()[0])  # type: ignore[attr-defined]
        assert n_clear >= 1
        frames = [c for c in r.checks if c.name.startswith("frames")]  # type: ignore[attr-defined]
        assert frames and all(c.ok for c in frames), r
        kinds.update(c.name.split()[1][0] for c in frames)
    assert kinds == {"v", "a"}


def test_clear_lead_cli_report_mentions_it(clear_lead: tuple[dict[str, Path], Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    pkgs, src = clear_lead
    rc = cli_main(["verify", str(pkgs["cbcs-native"]), "--reference", str(src),
                   "--key", f"{KID}:{KEY.hex()}", "--no-fetch-key-uris", "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out[-3000:]
    assert "clear lead" in out and KEY.hex() not in out


@pytest.mark.parametrize("name", ["cenc-native", "cbcs-ffmpeg"])
def test_clear_lead_wrong_key_fails(clear_lead: tuple[dict[str, Path], Path], name: str) -> None:
    """The clear lead decodes without a key, so only the encrypted part can catch a wrong key:
    it must still fail."""
    pkgs, src = clear_lead
    report = verify_package(pkgs[name], src, keys=WRONG_KEYS, fetch_key_uris=False)
    media = _media(report)
    assert media and all(not r.ok for r in media)  # type: ignore[attr-defined]
    for r in media:
        assert _check(r, "senc").ok  # the signaling is fine; the frames are not
        assert any(not c.ok for c in r.checks  # type: ignore[attr-defined]
                   if c.name.startswith(("frames", "decode"))), r


def _copy(pkg: Path, tmp_path: Path) -> Path:
    dst = tmp_path / pkg.name
    shutil.copytree(pkg, dst)
    return dst


def _drop_senc(seg: Path) -> None:
    """Rename the traf's senc box to 'free' (same size: nothing else moves)."""
    buf = bytearray(seg.read_bytes())
    moof = next(b for b in iter_boxes(bytes(buf)) if b.type == "moof")
    senc = _boxes(bytes(buf), _boxes(bytes(buf), moof)["traf"])["senc"]
    buf[senc.start + 4 : senc.start + 8] = b"free"
    seg.write_bytes(bytes(buf))


def _set_sdi(seg: Path, sdi: int) -> None:
    """Make the (single) traf's tfhd name sample description ``sdi``: overwrite the field, or
    insert it (flag 0x000002) and shift what follows: box sizes, trun data_offset, saio
    offsets (both relative to the moof here) and the sidx referenced_size."""
    data = seg.read_bytes()
    tops = list(iter_boxes(data))
    moof = next(b for b in tops if b.type == "moof")
    trafs = [b for b in iter_boxes(data, moof.body, moof.end) if b.type == "traf"]
    assert len(trafs) == 1
    traf = trafs[0]
    kids = list(iter_boxes(data, traf.body, traf.end))
    tfhd = next(b for b in kids if b.type == "tfhd")
    flags = int.from_bytes(data[tfhd.body + 1 : tfhd.body + 4], "big")
    assert flags & 0x020000  # default-base-is-moof: offsets are relative to the moof
    at = tfhd.body + 8 + (8 if flags & 0x000001 else 0)
    buf = bytearray(data)
    if flags & 0x000002:
        struct.pack_into(">I", buf, at, sdi)
        seg.write_bytes(bytes(buf))
        return
    buf[at:at] = struct.pack(">I", sdi)
    buf[tfhd.body + 1 : tfhd.body + 4] = (flags | 0x000002).to_bytes(3, "big")

    def moved(pos: int) -> int:
        return pos + 4 if pos >= at else pos

    for box in (tfhd, traf, moof):
        (size,) = struct.unpack_from(">I", buf, box.start)
        struct.pack_into(">I", buf, box.start, size + 4)
    for b in kids:
        body = moved(b.body)
        if b.type == "trun" and int.from_bytes(buf[body + 1 : body + 4], "big") & 0x000001:
            (off,) = struct.unpack_from(">i", buf, body + 8)
            struct.pack_into(">i", buf, body + 8, off + 4)
        elif b.type == "saio":
            v, saio_flags = buf[body], int.from_bytes(buf[body + 1 : body + 4], "big")
            p = body + 4 + (8 if saio_flags & 1 else 0)
            (count,) = struct.unpack_from(">I", buf, p)
            for i in range(count):
                q = p + 4 + i * (8 if v else 4)
                fmt = ">Q" if v else ">I"
                (off,) = struct.unpack_from(fmt, buf, q)
                struct.pack_into(fmt, buf, q, off + 4)
    for b in tops:
        if b.type == "sidx":
            v = buf[b.body]
            p = b.body + 4 + 8 + (16 if v else 8) + 2
            (count,) = struct.unpack_from(">H", buf, p)
            assert count == 1
            (ref,) = struct.unpack_from(">I", buf, p + 2)
            struct.pack_into(">I", buf, p + 2, ref + 4)
    seg.write_bytes(bytes(buf))


@pytest.mark.parametrize("name", IDS)
def test_encrypted_fragment_without_senc_fails(clear_lead: tuple[dict[str, Path], Path],
                                               tmp_path: Path, name: str) -> None:
    pkgs, src = clear_lead
    pkg = _copy(pkgs[name], tmp_path)
    seg = sorted((pkg / "0").glob("segment_*.m4s"))[1]  # the first encrypted video fragment
    _drop_senc(seg)
    report = verify_package(pkg, src, keys=KEYS, fetch_key_uris=False)
    bad = report.failed()
    assert {r.name.split(":")[0] for r in bad} == {"hls", "dash"}, report.to_json()
    for r in _media(report):
        senc = _check(r, "senc")
        if r in bad:
            assert not senc.ok  # type: ignore[attr-defined]
            assert seg.name in senc.detail  # type: ignore[attr-defined]
            assert "no sample encryption data" in senc.detail  # type: ignore[attr-defined]
        else:
            assert senc.ok  # the audio rendition is untouched


@pytest.mark.parametrize("name", IDS)
def test_clear_entry_after_encrypted_fails(clear_lead: tuple[dict[str, Path], Path],
                                           tmp_path: Path, name: str) -> None:
    pkgs, src = clear_lead
    pkg = _copy(pkgs[name], tmp_path)
    seg = sorted((pkg / "0").glob("segment_*.m4s"))[-1]  # after an encrypted fragment
    _set_sdi(seg, 2)
    report = verify_package(pkg, src, keys=KEYS, fetch_key_uris=False)
    bad = report.failed()
    assert {r.name.split(":")[0] for r in bad} == {"hls", "dash"}, report.to_json()
    for r in bad:
        senc = _check(r, "senc")
        assert not senc.ok  # type: ignore[attr-defined]
        assert "clear fragment after encrypted ones" in senc.detail  # type: ignore[attr-defined]
        assert seg.name in senc.detail  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["cenc-native", "cbcs-ffmpeg"])
def test_patcher_control_and_clear_lead_on_protected_entry(
        clear_lead: tuple[dict[str, Path], Path], tmp_path: Path, name: str) -> None:
    """Control for ``_set_sdi``: inserting an explicit index 1 (the protected entry, as the
    trex default already says) into an encrypted fragment keeps the package valid, frames
    included. Then pointing the clear lead at entry 1 (protected, but no senc) fails."""
    pkgs, src = clear_lead
    pkg = _copy(pkgs[name], tmp_path)
    segs = sorted((pkg / "0").glob("segment_*.m4s"))
    before = segs[1].stat().st_size
    _set_sdi(segs[1], 1)
    assert segs[1].stat().st_size == before + 4  # the field was inserted, not overwritten
    report = verify_package(pkg, src, keys=KEYS, fetch_key_uris=False)
    assert report.ok, report.to_json()
    _set_sdi(segs[0], 1)
    report = verify_package(pkg, src, keys=KEYS, fetch_key_uris=False)
    bad = report.failed()
    assert {r.name.split(":")[0] for r in bad} == {"hls", "dash"}, report.to_json()
    for r in bad:
        detail = _check(r, "senc").detail  # type: ignore[attr-defined]
        assert "protected sample description 1" in detail and segs[0].name in detail


# --- clear by seig (isProtected 0) on a protected sample entry: hand-built moofs on a real init --

def _box(typ: str, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), typ.encode()) + payload


def _full(typ: str, version: int, flags: int, payload: bytes) -> bytes:
    return _box(typ, bytes([version]) + flags.to_bytes(3, "big") + payload)


def _moof(track_id: int, samples: int, *, seig: bool | None, covered: int | None = None,
          senc: bool = False) -> bytes:
    """One traf on the trex default entry: ``seig`` None: no sample groups; else an sgpd 'seig'
    entry with isProtected = ``seig`` and an sbgp mapping ``covered`` samples to it."""
    parts = [_full("tfhd", 0, 0x020000, struct.pack(">I", track_id)),
             _full("trun", 0, 0, struct.pack(">I", samples))]
    if seig is not None:
        entry = bytes([0, 0, int(seig), 0 if not seig else 8]) + KID.bytes
        parts.append(_full("sgpd", 1, 0, b"seig" + struct.pack(">II", len(entry), 1) + entry))
        n = samples if covered is None else covered
        parts.append(_full("sbgp", 0, 0, b"seig" + struct.pack(">III", 1, n, 0x10001)))
    if senc:
        parts.append(_full("senc", 0, 0, struct.pack(">I", 0)))
    return _box("moof", _full("mfhd", 0, 0, struct.pack(">I", 1)) + _box("traf", b"".join(parts)))


@pytest.mark.parametrize("moofs, ok, words", [
    (["clear", "enc"], True, "1 clear lead, 1 with sample"),
    (["enc", "clear"], False, "clear fragment after encrypted ones"),
    (["protected", "enc"], False, "carries no sample encryption data"),
    (["partial", "enc"], False, "carries no sample encryption data"),
    (["clear", "clear"], False, "no fragment is encrypted"),
], ids=["seig-clear-lead", "seig-clear-after", "seig-protected-no-senc", "seig-not-covering",
        "all-clear"])
def test_seig_clear_lead(clear_lead: tuple[dict[str, Path], Path], moofs: list[str],
                         ok: bool, words: str) -> None:
    """A fragment on the protected entry is clear when an sbgp maps every sample to a seig
    entry with isProtected 0; only as a leading run, and only if every sample is covered."""
    from speke_packager.verify.boxes import read_mp4_facts
    from speke_packager.verify.fragments import classify_fragments

    pkgs, _ = clear_lead
    init = (pkgs["cenc-native"] / "0" / "init.mp4").read_bytes()
    (tid,) = read_mp4_facts(init).tracks
    made = {"clear": _moof(tid, 5, seig=False), "protected": _moof(tid, 5, seig=True),
            "partial": _moof(tid, 5, seig=False, covered=4),
            "enc": _moof(tid, 5, seig=None, senc=True)}
    facts = read_mp4_facts(init + b"".join(made[m] for m in moofs))
    summary = classify_fragments(facts)
    assert summary.ok is ok and words in summary.detail(), summary.detail()
