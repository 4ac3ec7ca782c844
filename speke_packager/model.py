"""Frozen values that every stage shares. Stages exchange these, never each other's modules.

Content keys hide themselves: ``repr`` and ``str`` of anything here show KIDs, never keys.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from .constants import DrmSystem, Scheme, SpekeVersion
from .errors import UsageError


@dataclass(frozen=True, slots=True)
class ContentKey:
    """A content key. ``key`` is secret: it never appears in repr/str."""

    kid: UUID
    key: bytes = field(repr=False)
    # The IV to encrypt with when one is given (8 or 16 bytes): from a SPEKE answer, keys sets
    # the explicitIV, else the IV= of the key server's HLS signaling; None: the packager picks.
    iv: bytes | None = None

    def __post_init__(self) -> None:
        if len(self.key) != 16:
            raise UsageError(f"content key for KID {self.kid} must be 16 bytes")
        if self.iv is not None and len(self.iv) not in (8, 16):
            raise UsageError(f"IV for KID {self.kid} must be 8 or 16 bytes")

    def __repr__(self) -> str:
        iv = "yes" if self.iv else "no"
        return f"ContentKey(kid={self.kid}, key=<hidden>, iv={iv})"

    __str__ = __repr__


class TrackKind(enum.Enum):
    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """What key selection needs to know about a track, read from the media itself."""

    kind: TrackKind
    codec: str  # 'avc1', 'hvc1', 'mp4a', 'ac-3', 'ec-3', 'vp09', 'Opus', ...
    width: int = 0
    height: int = 0
    channels: int = 0
    fps: float = 0.0
    hdr: bool = False
    track_id: int = 1

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True, slots=True)
class VideoFilter:
    """CPIX VideoFilter; bounds are inclusive except ``min_fps`` (exclusive)."""

    min_pixels: int | None = None
    max_pixels: int | None = None
    min_fps: float | None = None
    max_fps: float | None = None
    hdr: bool | None = None

    def matches(self, track: TrackInfo) -> bool:
        if track.kind is not TrackKind.VIDEO:
            return False
        px = track.pixels
        if self.min_pixels is not None and px < self.min_pixels:
            return False
        if self.max_pixels is not None and px > self.max_pixels:
            return False
        if self.min_fps is not None and track.fps and track.fps <= self.min_fps:
            return False
        if self.max_fps is not None and track.fps and track.fps > self.max_fps:
            return False
        return not (self.hdr is not None and self.hdr != track.hdr)


@dataclass(frozen=True, slots=True)
class AudioFilter:
    min_channels: int | None = None
    max_channels: int | None = None

    def matches(self, track: TrackInfo) -> bool:
        if track.kind is not TrackKind.AUDIO:
            return False
        ch = track.channels or 2
        if self.min_channels is not None and ch < self.min_channels:
            return False
        return not (self.max_channels is not None and ch > self.max_channels)


@dataclass(frozen=True, slots=True)
class KeyPeriod:
    """A crypto-period (live rotation). ``start``/``end`` are xs:dateTime text (SPEKE v2.1)."""

    index: int
    id: str = ""
    start: str | None = None
    end: str | None = None

    @property
    def period_id(self) -> str:
        return self.id or f"keyPeriod_{self.index}"


@dataclass(frozen=True, slots=True)
class DrmSignal:
    """Per-DRM signaling for one key, ready for manifests and init segments.

    Every byte field is exactly what the key server sent (decoded from base64); manifest writers
    insert them verbatim.
    """

    drm: DrmSystem
    system_id: UUID
    pssh: bytes | None = None  # whole pssh box
    content_protection_data: str | None = None  # decoded CPD XML fragment (UTF-8 text)
    hls_media: str | None = None  # decoded #EXT-X-KEY line(s) (v2) or built from v1 data
    hls_master: str | None = None  # decoded #EXT-X-SESSION-KEY line(s)
    playready_object: bytes | None = None  # PlayReady Object (PRO)
    uri_ext_x_key: str | None = None  # v1 URIExtXKey (decoded)
    key_format: str | None = None  # v1 speke:KeyFormat (decoded)
    key_format_versions: str | None = None  # v1 speke:KeyFormatVersions (decoded)
    smooth_streaming_header: bytes | None = None

    def __repr__(self) -> str:
        parts = [self.drm.label]
        for name in ("pssh", "content_protection_data", "hls_media", "playready_object"):
            if getattr(self, name):
                parts.append(name)
        return f"DrmSignal({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One content key with its role in the encryption contract and its DRM signaling."""

    key: ContentKey
    track_type: str = "ALL"  # CPIX intendedTrackType ('VIDEO', 'AUDIO', 'SD', 'HD', ..., 'ALL')
    period: KeyPeriod | None = None
    video_filters: tuple[VideoFilter, ...] = ()
    audio_filters: tuple[AudioFilter, ...] = ()
    drm: tuple[DrmSignal, ...] = ()

    @property
    def kid(self) -> UUID:
        return self.key.kid

    def signal(self, drm: DrmSystem) -> DrmSignal | None:
        for s in self.drm:
            if s.drm is drm:
                return s
        return None

    def matches(self, track: TrackInfo) -> bool:
        """True when this key's usage rule selects ``track`` (same-type filters OR; a rule
        without filters of the track's type does not match, except ``ALL`` with none at all)."""
        if track.kind is TrackKind.VIDEO:
            if not self.video_filters:
                return self.track_type == "ALL" and not self.audio_filters
            return any(f.matches(track) for f in self.video_filters)
        if track.kind is TrackKind.AUDIO:
            if not self.audio_filters:
                return self.track_type == "ALL" and not self.video_filters
            return any(f.matches(track) for f in self.audio_filters)
        return False


@dataclass(frozen=True, slots=True)
class KeySet:
    """All keys of one SPEKE answer (or given by the user), per track type and key period."""

    content_id: str
    scheme: Scheme
    entries: tuple[KeyEntry, ...]
    version: SpekeVersion | None = None  # None: raw keys given by the user

    def __iter__(self) -> Iterator[KeyEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def periods(self) -> list[KeyPeriod | None]:
        seen: list[KeyPeriod | None] = []
        for e in self.entries:
            if e.period not in seen:
                seen.append(e.period)
        return seen

    def select(self, track: TrackInfo, period: int | None = None) -> KeyEntry | None:
        """The key for ``track`` in key period ``period`` (None: any/no period).

        Returns None when no rule matches (the track stays clear). More than one match is an
        error: CPIX allows a track to match at most one key per period."""
        found: list[KeyEntry] = []
        for e in self.entries:
            if period is not None and e.period is not None and e.period.index != period:
                continue
            if e.matches(track):
                found.append(e)
        if len(found) > 1:
            kids = ", ".join(str(e.kid) for e in found)
            raise UsageError(f"{track.kind.value} track matches several keys ({kids})")
        return found[0] if found else None

    def by_kid(self, kid: UUID) -> KeyEntry:
        for e in self.entries:
            if e.kid == kid:
                return e
        raise KeyError(str(kid))

    def content_keys(self) -> Sequence[ContentKey]:
        return [e.key for e in self.entries]
