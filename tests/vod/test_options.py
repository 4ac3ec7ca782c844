"""Clear lead, parallel jobs (byte-identical with a fixed IV source), progress, raw-key labels."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest

from speke_packager.constants import Scheme
from speke_packager.errors import UsageError
from speke_packager.pipeline.options import VodOptions
from speke_packager.pipeline.rawkeys import raw_keyset
from speke_packager.pipeline.vod import encrypt_vod

from .conftest import IV, KEY, KEYSPEC, KID, concat, frames, key_lines, tenc


def _fixed_ivs() -> object:
    counter = itertools.count(1)
    return lambda n: hashlib.sha256(str(next(counter)).encode()).digest()[:n]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix != ".m3u8"}


def test_jobs_do_not_change_the_output(packages, tmp_path: Path) -> None:
    manifest = packages("dash-number")
    outs = []
    for jobs in (1, 3):
        out = tmp_path / f"out{jobs}"
        encrypt_vod(VodOptions(input=manifest, output=out, scheme=Scheme.CENC, jobs=jobs,
                               iv_source=_fixed_ivs()),  # type: ignore[arg-type]
                    raw_keyset([KEYSPEC], Scheme.CENC))
        outs.append(_tree(out))
    assert outs[0] == outs[1]


def test_progress_reports_every_piece(packages, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    r = encrypt_vod(VodOptions(input=packages("hls-fmp4"), output=tmp_path / "out",
                               scheme=Scheme.CBCS, key_uri="k.bin", iv=IV,
                               progress=lambda d, t: seen.append((d, t))),
                    raw_keyset([KEYSPEC], Scheme.CBCS))
    assert seen and seen[-1] == (r.segments, r.segments)
    assert [d for d, _ in seen] == list(range(1, r.segments + 1))


def test_clear_lead_hls_and_dash(media, tmp_path: Path) -> None:
    src = media("h264-aac-mp4")
    out = tmp_path / "out"
    encrypt_vod(VodOptions(input=src, output=out, scheme=Scheme.CBCS, segment_duration=2,
                           clear_lead=2, key_uri="k.bin", iv=IV),
                raw_keyset([KEYSPEC], Scheme.CBCS))
    text = (out / "media_0.m3u8").read_text()
    lines = text.splitlines()
    first_seg = next(i for i, ln in enumerate(lines) if ln.endswith(".m4s"))
    first_key = next(i for i, ln in enumerate(lines) if ln.startswith("#EXT-X-KEY"))
    assert first_seg < first_key  # the first segment is before any key tag: clear
    assert len(key_lines(text)) == 1
    init = out / "0" / "init.mp4"
    assert tenc(init.read_bytes())["kid"] == KID  # the init still announces the key
    segs = sorted((out / "0").glob("segment_*.m4s"))
    ref = frames(src, "v:0")
    assert ref
    full = concat(tmp_path / "all.mp4", [init, *segs])
    assert frames(full, "v:0", key=KEY) == ref
    first_only = concat(tmp_path / "first.mp4", [init, segs[0]])
    clear_part = frames(first_only, "v:0")  # no key: the clear lead decodes as is
    assert clear_part and clear_part == ref[:len(clear_part)]
    rest = concat(tmp_path / "rest.mp4", [init, *segs])
    assert frames(rest, "v:0") != ref  # later segments are encrypted


@pytest.mark.parametrize("specs, why", [
    ([], "no keys"),
    ([KEYSPEC, f"video=10112233445566778899aabbccddeeff:{KEY.hex()}"], "either one"),
    ([f"video={KEYSPEC}", f"audio={KEYSPEC}"], "given twice"),
    ([f"video={KEYSPEC}", f"video=10112233445566778899aabbccddeeff:{KEY.hex()}"],
     "more than one key"),
    ([f"sd={KEYSPEC}"], "unknown track label"),
    (["nothex:00"], "KID"),
])
def test_raw_key_errors(specs: list[str], why: str) -> None:
    with pytest.raises(UsageError, match=why) as exc:
        raw_keyset(specs, Scheme.CBCS)
    assert KEY.hex() not in str(exc.value)


def test_video_and_audio_raw_keys(media, tmp_path: Path) -> None:
    akid, akey = "99112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100"
    src = media("h264-aac-mp4")
    out = tmp_path / "out"
    r = encrypt_vod(VodOptions(input=src, output=out, scheme=Scheme.CENC, segment_duration=2,
                               format=None, key_uri="https://k/{kid}"),
                    raw_keyset([f"video={KEYSPEC}", f"audio={akid}:{akey}"], Scheme.CENC))
    kinds = {(t.kind, t.kid) for t in r.tracks}
    assert ("video", str(KID)) in kinds and ("audio", "99112233-4455-6677-8899-aabbccddeeff") \
        in kinds
    assert key_lines((out / "media_1.m3u8").read_text())[0]["URI"] == f"https://k/{akid}"
    audio = concat(tmp_path / "a.mp4", [out / "1" / "init.mp4",
                                        *sorted((out / "1").glob("segment_*.m4s"))])
    ref = frames(src, "a:0")
    assert frames(audio, "a:0", key=bytes.fromhex(akey)) == ref
    assert frames(audio, "a:0", key=KEY) != ref


def test_audio_only_key_leaves_video_clear(media, tmp_path: Path) -> None:
    src = media("h264-aac-mp4")
    out = tmp_path / "out"
    r = encrypt_vod(VodOptions(input=src, output=out, scheme=Scheme.CBCS, segment_duration=2,
                               format=None, key_uri="k", iv=IV),
                    raw_keyset([f"audio={KEYSPEC}"], Scheme.CBCS))
    assert {t.kind: t.kid for t in r.tracks}["video"] is None
    assert b"tenc" not in (out / "0" / "init.mp4").read_bytes()
    assert not key_lines((out / "media_0.m3u8").read_text())
    mpd = (out / "manifest.mpd").read_text()
    assert mpd.count("mp4protection") == 1


def test_progress_bar_only_on_a_terminal(packages, tmp_path: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    args = [sys.executable, "-m", "speke_packager", "encrypt-vod", str(packages("dash-number")),
            "--scheme", "cenc", "--key", KEYSPEC]
    plain = subprocess.run([*args, "-o", str(tmp_path / "a")], capture_output=True, text=True,
                           check=False)
    assert plain.returncode == 0 and plain.stderr == ""  # not a TTY: no bar
    assert "encrypted 2 of 2 tracks" in plain.stdout
    master, slave = pty.openpty()
    proc = subprocess.Popen([*args, "-o", str(tmp_path / "b"), "--jobs", "1"],
                            stdout=subprocess.PIPE, stderr=slave, env=dict(os.environ,
                                                                            COLUMNS="80"))
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=120) == 0
    os.close(master)
    assert b"encrypting" in seen
    assert KEY.hex().encode() not in seen
