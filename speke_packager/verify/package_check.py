"""``verify``: prove a package with independent decryptors and check its DRM signaling.

For each rendition the segments are decrypted by FFmpeg (>= 8) — fMP4 cenc/cbcs from the init
segment and media segments concatenated, HLS AES-128 and SAMPLE-AES through FFmpeg's own HLS
reader — decoded, and the decoded-frame hashes are compared with the same stream of the clear
reference (a media file or a clear HLS/DASH package: :mod:`.references`). The manifest's
signaling (DASH ContentProtection, HLS EXT-X-KEY / SESSION-KEY) is checked against the
tenc/seig/pssh boxes of the segments (:mod:`.checks`). Keys reach FFmpeg only through 0600
files in a private 0700 folder, never its command line.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

from ..constants import KEYFORMAT_IDENTITY, Packaging, Scheme
from ..errors import SpekePackagerError, ToolError
from ..storage import S3Options, is_s3
from .boxes import Mp4Facts, read_mp4_facts
from .checks import (
    check_dash_signaling,
    check_key_tag,
    check_tenc,
    pssh_checks,
    session_key_checks,
)
from .decode import DecodeError, frame_hashes, keyed_input, scrub, stream_kinds
from .keys import KeySource, write_private
from .package import KeyTag, Rendition, discover
from .references import Reference, compare, concat_rendition
from .remote import staged
from .report import RenditionReport, VerifyReport

__all__ = ["package_protection", "verify_package"]


@contextmanager
def _private_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="speke-verify-"))  # mode 0700
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- fMP4 ---------------------------------------------------------------------------------------

def _av_streams(kinds: list[str]) -> Iterator[tuple[str, str]]:
    """``(kind, FFmpeg stream specifier)`` of each video and audio stream, in input order
    (``v:0``, ``a:0``, ``a:1``...); other streams are skipped."""
    counters: dict[str, int] = {}
    for kind in kinds:
        if kind in ("video", "audio"):
            n = counters.get(kind, 0)
            counters[kind] = n + 1
            yield kind, f"{kind[0]}:{n}"


def _mp4_facts(r: Rendition) -> Mp4Facts:
    facts = read_mp4_facts(r.init.read()) if r.init is not None else Mp4Facts()
    for seg in r.segments:
        f = read_mp4_facts(seg.read(), source=seg.path.name)
        facts.pssh.extend(f.pssh)
        facts.seig_kids.extend(f.seig_kids)
        facts.fragment_list.extend(f.fragment_list)
        for tid, entries in f.tracks.items():  # self-initialising segments (SegmentBase)
            facts.tracks.setdefault(tid, entries)
            facts.handlers.setdefault(tid, f.handlers.get(tid, ""))
            facts.entries.setdefault(tid, f.entries.get(tid, []))
            facts.init_seig.setdefault(tid, f.init_seig.get(tid, []))
        for tid, sdi in f.trex_sdi.items():
            facts.trex_sdi.setdefault(tid, sdi)
    return facts


def _verify_fmp4(rep: RenditionReport, r: Rendition, ref: Reference, keys: KeySource,
                 tmp: Path) -> None:
    facts = _mp4_facts(r)
    kid = check_tenc(rep, facts)
    pssh_checks(rep, "box", facts.pssh, kid)
    const_iv = next((t.constant_iv for e in facts.tracks.values() for t in e if t.constant_iv),
                    b"")
    if r.source == "dash":
        check_dash_signaling(rep, r, facts, kid)
    else:
        if not r.hls_key_tags:
            rep.add("EXT-X-KEY", False, "segments are encrypted but the playlist has no key")
        for tag in r.hls_key_tags:
            if tag.method != "NONE":
                check_key_tag(rep, tag, r.hls_version, "fmp4", scheme=rep.protection, kid=kid,
                               const_iv=const_iv)
    kids = sorted({t.kid for e in facts.tracks.values() for t in e if t.is_protected}
                  | set(facts.seig_kids), key=str)
    if not kids:
        return
    found = keys.for_kids(kids)
    missing = [str(k) for k in kids if k not in found]
    if missing:
        rep.add("keys", False, f"no key for KID {', '.join(missing)}")
        return
    joined = concat_rendition(r, tmp / "joined.mp4")
    secrets = list(found.values())
    args = keyed_input(joined, found, tmp / "joined.ffconcat")
    for kind, spec in _av_streams(stream_kinds(["-i", str(joined)])):
        try:
            got = frame_hashes(args, spec, secrets=secrets, what=f"{r.name} {spec}")
        except DecodeError as exc:
            rep.add(f"frames {spec}", False, scrub(str(exc), secrets))
            continue
        compare(rep, ref, kind, spec, got)


# --- HLS through FFmpeg's HLS reader (AES-128, SAMPLE-AES TS) -----------------------------------

def _write_playlist(r: Rendition, indexes: list[int], key_files: dict[int, Path], dest: Path,
                    *, repeat_each: bool = False) -> None:
    """A private copy of the playlist: absolute segment paths, local key files, explicit IVs."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:5",
             f"#EXT-X-TARGETDURATION:{max(1, r.target_duration)}", "#EXT-X-MEDIA-SEQUENCE:0"]
    if r.init is not None:
        br = f',BYTERANGE="{r.init.length}@{r.init.offset}"' if r.init.length is not None else ""
        lines.append(f'#EXT-X-MAP:URI="{r.init.path.as_uri()}"{br}')
    for i in indexes:
        seg = r.hls_segments[i]
        copies = 2 if repeat_each else 1
        for c in range(copies):
            if c or (seg.discontinuity and i != indexes[0]):
                lines.append("#EXT-X-DISCONTINUITY")
            tag = _decrypt_tag(seg.keys)
            if tag is None:
                lines.append("#EXT-X-KEY:METHOD=NONE")
            else:
                iv = tag.attrs.get("IV") or f"0x{seg.sequence:032x}"
                lines.append(f'#EXT-X-KEY:METHOD={tag.method},URI="{key_files[id(tag)].as_uri()}",'
                             f"IV={iv}")
            lines.append(f"#EXTINF:{seg.duration:.6f},")
            if seg.piece.length is not None:
                lines.append(f"#EXT-X-BYTERANGE:{seg.piece.length}@{seg.piece.offset}")
            lines.append(seg.piece.path.as_uri())
    lines.append("#EXT-X-ENDLIST")
    dest.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _decrypt_tag(tags: tuple[KeyTag, ...]) -> KeyTag | None:
    for t in tags:
        if t.keyformat == KEYFORMAT_IDENTITY:
            return t
    return tags[0] if tags else None


def _hls_input(playlist: Path) -> list[str]:
    return ["-allowed_extensions", "ALL", "-protocol_whitelist", "file,crypto,data",
            "-i", str(playlist)]


def _verify_hls_reader(rep: RenditionReport, r: Rendition, ref: Reference, keys: KeySource,
                       tmp: Path) -> None:
    tags = [t for t in r.hls_key_tags if t.method != "NONE"]
    methods = sorted({t.method for t in tags})
    rep.protection = ",".join(methods) or "clear"
    for tag in tags:
        check_key_tag(rep, tag, r.hls_version, r.container, scheme=None, kid=None,
                       const_iv=b"")
    if not tags:
        rep.add("EXT-X-KEY", False, "the playlist has no EXT-X-KEY: the rendition is clear")
        return
    key_files: dict[int, Path] = {}
    secrets: list[bytes] = []
    in_force = [t for t in (_decrypt_tag(s.keys) for s in r.hls_segments) if t is not None]
    for n, tag in enumerate({id(t): t for t in in_force}.values()):
        key, how = keys.for_tag(tag)
        if key is None or len(key) != 16:
            rep.add(f"key line {tag.line}", False, how if key is None else
                    f"{how} yields {len(key)} bytes, not 16")
            return
        kf = tmp / f"k{n}.bin"
        key_files[id(tag)] = write_private(kf, key)
        secrets.append(key)
        rep.add(f"key line {tag.line}", True, f"from {how}")
    whole = tmp / "whole.m3u8"
    all_idx = list(range(len(r.hls_segments)))
    _write_playlist(r, all_idx, key_files, whole)
    kinds = stream_kinds(_hls_input(whole))
    sample_aes_ts = r.container == "ts" and "SAMPLE-AES" in methods
    for kind, spec in _av_streams(kinds):
        try:
            if sample_aes_ts and kind == "video":
                got = _sample_aes_video(r, key_files, tmp, spec, secrets)
            else:
                got = frame_hashes(_hls_input(whole), spec, secrets=secrets,
                                   what=f"{r.name} {spec}")
        except DecodeError as exc:
            rep.add(f"frames {spec}", False, scrub(str(exc), secrets))
            continue
        compare(rep, ref, kind, spec, got)


def _sample_aes_video(r: Rendition, key_files: dict[int, Path], tmp: Path, spec: str,
                      secrets: list[bytes]) -> list[str]:
    """FFmpeg's SAMPLE-AES TS reader leaves the last video PES of a playlist encrypted and gives
    a segment's last PES the next segment's IV (media-encryption.md §9). So each segment is
    decoded alone from a playlist holding it twice with the same IV; the first copy's frames
    (counted as packets of the single copy) are exact."""
    out: list[str] = []
    for i in range(len(r.hls_segments)):
        single, double = tmp / f"s{i}.m3u8", tmp / f"d{i}.m3u8"
        _write_playlist(r, [i], key_files, single)
        _write_playlist(r, [i], key_files, double, repeat_each=True)
        n = len(frame_hashes(_hls_input(single), spec, secrets=secrets, decode=False,
                             what=f"{r.name} segment {i} packets"))
        hashes = frame_hashes(_hls_input(double), spec, secrets=secrets,
                              what=f"{r.name} segment {i}")
        out.extend(hashes[:n])
    return out


# --- package level -----------------------------------------------------------------------------

def package_protection(directory: str | os.PathLike[str]) -> tuple[list[Scheme], list[Packaging]]:
    """The schemes and packagings a package uses (to ask a SPEKE server for its keys)."""
    pkg = discover(Path(directory))
    schemes: list[Scheme] = []
    packagings: list[Packaging] = []
    for r in pkg.renditions:
        if r.source == "dash":
            packagings.append(Packaging.DASH)
        else:
            packagings.append(Packaging.HLS_TS if r.container == "ts" else Packaging.HLS_FMP4)
        methods = {t.method for t in r.hls_key_tags}
        if "AES-128" in methods:
            schemes.append(Scheme.AES_128)
        elif r.container == "ts" and "SAMPLE-AES" in methods:
            schemes.append(Scheme.SAMPLE_AES)
        elif r.init is not None:
            facts = read_mp4_facts(r.init.read())
            for entries in facts.tracks.values():
                for t in entries:
                    if t.scheme in ("cenc", "cbcs"):
                        schemes.append(Scheme(t.scheme))
    return list(dict.fromkeys(schemes)), list(dict.fromkeys(packagings))


def verify_package(
    directory: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    *,
    keys: Mapping[UUID, bytes] | None = None,
    clearkey_license_url: str | None = None,
    fetch_key_uris: bool = True,
    storage: S3Options | None = None,
) -> VerifyReport:
    """Verify every rendition of the package in ``directory`` against the clear ``reference``:
    a media file, a clear HLS or DASH manifest, or a folder of them (see :mod:`.references`).

    Keys come from ``keys`` (KID -> 16 bytes), a W3C ClearKey licence server, or (HLS) the
    playlist's key URIs when ``fetch_key_uris``. Returns a report; mismatches do not raise
    (call :meth:`VerifyReport.raise_for_failure`). Missing tools raise :class:`ToolError`.

    ``directory`` and ``reference`` may be ``s3://`` URLs (a package prefix, a media file or
    clear manifest): they are downloaded first (:mod:`.remote`; ``storage``: the endpoint...).
    """
    if is_s3(directory) or is_s3(reference):
        with staged(directory, reference, storage) as (local_dir, local_ref):
            report = verify_package(local_dir, local_ref, keys=keys,
                                    clearkey_license_url=clearkey_license_url,
                                    fetch_key_uris=fetch_key_uris)
        return VerifyReport(str(directory), str(reference), report.renditions)
    root = Path(directory).resolve()
    pkg = discover(root)
    ks = KeySource(keys or {}, clearkey_license_url, fetch_key_uris, root)
    reports: list[RenditionReport] = []
    with _private_dir() as ref_tmp:
        ref = Reference(Path(reference), ref_tmp)
        for r in pkg.renditions:
            reports.append(_verify_rendition(root, r, ref, ks))
    sk = session_key_checks(pkg)
    if sk is not None:
        reports.append(sk)
    return VerifyReport(str(root), str(Path(reference)), reports)


def _verify_rendition(root: Path, r: Rendition, ref: Reference, ks: KeySource
                      ) -> RenditionReport:
    rep = RenditionReport(r.name, str(r.manifest.relative_to(root)), r.container)
    with _private_dir() as tmp:
        try:
            method_aes128 = any(t.method == "AES-128" for t in r.hls_key_tags)
            if r.source == "hls" and (r.container == "ts" or method_aes128):
                _verify_hls_reader(rep, r, ref, ks, tmp)
            else:
                _verify_fmp4(rep, r, ref, ks, tmp)
        except DecodeError as exc:
            rep.add("decode", False, scrub(str(exc), ks.secrets()))
        except ToolError:
            raise
        except SpekePackagerError as exc:
            rep.add("read", False, scrub(str(exc), ks.secrets()))
    return rep
