"""The live media playlist: a sliding window written atomically after every segment."""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ..._hls_attrs import Quoted, format_attribute_list
from ..._io import write_text_atomic
from ...errors import ManifestError, UsageError
from ...manifests.hls import (
    TAG_ENDLIST,
    TAG_EXTINF,
    TAG_MAP,
    TAG_MEDIA_SEQUENCE,
    HlsKey,
    MediaPlaylist,
    MediaSegment,
    render_media_playlist,
)
from .session import LiveSegment

__all__ = ["LivePlaylist"]


@dataclass(frozen=True, slots=True)
class _Entry:
    uri: str
    duration: float
    sequence: int
    keys: tuple[HlsKey, ...]


class LivePlaylist:
    """A live media playlist with a sliding window of ``window`` segments, written atomically
    to ``path`` after every :meth:`add`.

    The full key set (every KEYFORMAT) is written before the window's first segment and again
    at each key change, so a window that slid past a key change still carries the tags that
    cover its first segment. ``init_uri``: the ``EXT-X-MAP`` of fMP4 renditions."""

    def __init__(self, path: str | os.PathLike[str], *, window: int = 6,
                 target_duration: int | None = None, init_uri: str | None = None) -> None:
        if window < 1:
            raise UsageError("the playlist window must hold at least one segment")
        if target_duration is not None and target_duration < 1:
            raise UsageError("the target duration must be at least 1 second")
        self.path = Path(path)
        self.window = window
        self.target_duration = target_duration
        self.init_uri = init_uri
        self._entries: list[_Entry] = []
        self._ended = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LivePlaylist({str(self.path)!r}, window={self.window})"

    @property
    def media_sequence(self) -> int:
        with self._lock:
            return self._entries[0].sequence if self._entries else 0

    def add(self, uri: str, duration: float, segment: LiveSegment) -> None:
        """Append ``segment`` (written at ``uri``, ``duration`` seconds), slide the window and
        rewrite the playlist."""
        if not math.isfinite(duration) or duration <= 0:
            raise UsageError("a segment duration must be a positive number of seconds")
        if any(c in uri for c in "\r\n") or not uri:
            raise ManifestError(f"bad segment URI {uri!r}")
        with self._lock:
            if self._ended:
                raise UsageError("the playlist has ended (EXT-X-ENDLIST)")
            if self._entries and segment.sequence != self._entries[-1].sequence + 1:
                raise UsageError(f"segment {segment.sequence} does not follow "
                                 f"{self._entries[-1].sequence} (media sequence numbers must "
                                 "be consecutive)")
            if self.target_duration is None:
                self.target_duration = max(1, math.ceil(duration - 1e-6))
            if round(duration) > self.target_duration:
                raise ManifestError(f"segment {uri} lasts {duration:.3f}s, over the target "
                                    f"duration {self.target_duration}s")
            self._entries.append(_Entry(uri, duration, segment.sequence, segment.keys))
            del self._entries[:-self.window]
            text = self._render()
        write_text_atomic(self.path, text)

    def end(self) -> None:
        """Write ``EXT-X-ENDLIST`` (the event is over)."""
        with self._lock:
            self._ended = True
            text = self._render()
        write_text_atomic(self.path, text)

    def render(self) -> str:
        """The playlist text as it is now."""
        with self._lock:
            return self._render()

    def _render(self) -> str:
        if not self._entries:
            raise ManifestError("a live playlist needs at least one segment")
        header = ["#EXTM3U", f"#EXT-X-TARGETDURATION:{self.target_duration}",
                  f"{TAG_MEDIA_SEQUENCE}:{self._entries[0].sequence}"]
        if self.init_uri is not None:
            header.append(f"{TAG_MAP}:{format_attribute_list([('URI', Quoted(self.init_uri))])}")
        segs = [MediaSegment(uri=e.uri, duration=e.duration, sequence=e.sequence,
                             items=[f"{TAG_EXTINF}:{e.duration:.3f},"]) for e in self._entries]
        pl = MediaPlaylist(header=header, segments=segs,
                           trailer=[TAG_ENDLIST] if self._ended else [])
        return render_media_playlist(pl, [list(e.keys) for e in self._entries],
                                     version=6 if self.init_uri is not None else 3)
