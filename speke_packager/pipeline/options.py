"""Typed options and result of ``encrypt-vod``."""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..constants import Scheme
from ..model import KeySet
from ..storage import S3Options

# progress(done, total): called from the caller's thread after each written piece
ProgressCallback = Callable[[int, int], None]


class OutputFormat(enum.Enum):
    HLS = "hls"
    DASH = "dash"
    BOTH = "both"

    @property
    def hls(self) -> bool:
        return self is not OutputFormat.DASH

    @property
    def dash(self) -> bool:
        return self is not OutputFormat.HLS


class KeySource(Protocol):
    """Anything that turns the scheme into a key set (a SPEKE fetch, or fixed raw keys)."""

    def __call__(self, scheme: Scheme) -> KeySet: ...


def default_jobs() -> int:
    """The cores this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


@dataclass(frozen=True, slots=True)
class VodOptions:
    """What ``encrypt_vod`` does. ``format=None`` means: as the input (both for a media file).

    ``input`` and ``output`` are local paths or ``s3://bucket/key`` strings (a ``Path`` is
    always local); ``storage`` says how to reach object storage (None: botocore's chain)."""

    input: Path | str
    output: Path | str
    scheme: Scheme = Scheme.CBCS
    format: OutputFormat | None = None
    segment_duration: float = 6.0
    clear_lead: float = 0.0
    jobs: int = field(default_factory=default_jobs)
    force: bool = False
    key_uri: str | None = None  # HLS identity key URI; "{kid}" is replaced by the KID (hex)
    clearkey_license_url: str | None = None
    iv: bytes | None = field(default=None, repr=False)  # explicit 16-byte IV for every key
    iv_source: Callable[[int], bytes] = os.urandom  # tests pass a fixed source
    progress: ProgressCallback | None = None
    # how a media file is segmented: "native" (MP4/MOV with cenc/cbcs: our fragmenter, the
    # segments encrypted as they are cut), "ffmpeg", or None: native where it applies
    segmenter: str | None = None
    # a media file: one file per rendition (init, sidx, fragments) addressed by byte ranges
    # (DASH SegmentBase, HLS EXT-X-BYTERANGE) instead of one file per segment; native only
    single_file: bool = False
    storage: S3Options | None = None
    # called with the finished output folder, still under its temporary name, just before it is
    # published (encrypt-batch writes its completion manifest there, so it is never missing
    # from a published output)
    before_publish: Callable[[Path], None] | None = None


@dataclass(frozen=True, slots=True)
class TrackSummary:
    """One encrypted (or clear) rendition of the output."""

    manifest: str  # media playlist or Representation id
    kind: str
    codec: str
    width: int = 0
    height: int = 0
    channels: int = 0
    kid: str | None = None  # None: left clear (no key selected it)
    track_type: str | None = None


@dataclass(frozen=True, slots=True)
class VodResult:
    output: Path | str  # the published folder, or the s3:// prefix
    scheme: Scheme
    format: OutputFormat
    manifests: tuple[str, ...]
    tracks: tuple[TrackSummary, ...]
    segments: int
    bytes_in: int
    bytes_out: int
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (KIDs only, never keys)."""
        return {
            "output": str(self.output),
            "scheme": self.scheme.value,
            "format": self.format.value,
            "manifests": list(self.manifests),
            "segments": self.segments,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "tracks": [
                {"manifest": t.manifest, "kind": t.kind, "codec": t.codec, "width": t.width,
                 "height": t.height, "channels": t.channels, "kid": t.kid,
                 "track_type": t.track_type}
                for t in self.tracks
            ],
            "warnings": list(self.warnings),
        }
