"""The live media playlist: a sliding window written atomically after every segment."""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..._hls_attrs import Quoted, format_attribute_list
from ..._io import write_text_atomic
from ...errors import ManifestError, UsageError
from ...manifests.hls import (
    TAG_DISCONTINUITY,
    TAG_ENDLIST,
    TAG_EXTINF,
    TAG_MAP,
    TAG_MEDIA_SEQUENCE,
    HlsKey,
    InitSection,
    MediaPlaylist,
    MediaSegment,
    render_media_playlist,
)
from .session import LiveSegment

__all__ = ["LivePlaylist"]

TAG_DISCONTINUITY_SEQUENCE = "#EXT-X-DISCONTINUITY-SEQUENCE"
TAG_PLAYLIST_TYPE = "#EXT-X-PLAYLIST-TYPE"
TAG_PROGRAM_DATE_TIME = "#EXT-X-PROGRAM-DATE-TIME"


@dataclass(frozen=True, slots=True)
class _Entry:
    uri: str
    duration: float
    sequence: int
    keys: tuple[HlsKey, ...]
    init_uri: str | None = None
    program_date_time: datetime | None = None
    discontinuity: bool = False


def _pdt(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LivePlaylist:
    """A live media playlist with a sliding window of ``window`` segments (None: an EVENT
    playlist that keeps every segment), written atomically to ``path`` after every :meth:`add`
    (``path`` None: nothing is written, :meth:`render` gives the text).

    The full key set (every KEYFORMAT) is written before the window's first segment and again
    at each key change, so a window that slid past a key change still carries the tags that
    cover its first segment. ``init_uri``: the ``EXT-X-MAP`` of fMP4 renditions (one for the
    whole playlist; :meth:`add` may name one per segment instead, written whenever it changes
    and at the top of the window). ``EXT-X-DISCONTINUITY-SEQUENCE`` counts the discontinuities
    that slid out of the window."""

    def __init__(self, path: str | os.PathLike[str] | None, *, window: int | None = 6,
                 target_duration: int | None = None, init_uri: str | None = None) -> None:
        if window is not None and window < 1:
            raise UsageError("the playlist window must hold at least one segment")
        if target_duration is not None and target_duration < 1:
            raise UsageError("the target duration must be at least 1 second")
        self.path = Path(path) if path is not None else None
        self.window = window
        self.target_duration = target_duration
        self.init_uri = init_uri
        self._entries: list[_Entry] = []
        self._discontinuity_sequence = 0
        self._ended = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else None
        return f"LivePlaylist({where!r}, window={self.window})"

    @property
    def media_sequence(self) -> int:
        with self._lock:
            return self._entries[0].sequence if self._entries else 0

    @property
    def discontinuity_sequence(self) -> int:
        with self._lock:
            return self._discontinuity_sequence

    @property
    def uris(self) -> list[str]:
        """The segment URIs in the window, oldest first."""
        with self._lock:
            return [e.uri for e in self._entries]

    @property
    def ended(self) -> bool:
        return self._ended

    def add(self, uri: str, duration: float, segment: LiveSegment, *,
            init_uri: str | None = None, program_date_time: datetime | None = None,
            discontinuity: bool = False) -> list[str]:
        """Append ``segment`` (written at ``uri``, ``duration`` seconds), slide the window and
        rewrite the playlist. ``init_uri``: this segment's ``EXT-X-MAP``; ``program_date_time``:
        its ``EXT-X-PROGRAM-DATE-TIME`` (timezone-aware); ``discontinuity``: an
        ``EXT-X-DISCONTINUITY`` before it. Returns the URIs that left the window."""
        if not math.isfinite(duration) or duration <= 0:
            raise UsageError("a segment duration must be a positive number of seconds")
        for u in (uri, init_uri):
            if u is not None and (any(c in u for c in "\r\n") or not u):
                raise ManifestError(f"bad segment URI {u!r}")
        if program_date_time is not None and program_date_time.tzinfo is None:
            raise UsageError("EXT-X-PROGRAM-DATE-TIME needs a timezone-aware time")
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
            self._entries.append(_Entry(uri, duration, segment.sequence, segment.keys,
                                        init_uri, program_date_time, discontinuity))
            gone: list[_Entry] = []
            if self.window is not None and len(self._entries) > self.window:
                gone = self._entries[:-self.window]
                del self._entries[:-self.window]
            self._discontinuity_sequence += sum(e.discontinuity for e in gone)
            text = self._render()
        self._write(text)
        return [e.uri for e in gone]

    def end(self) -> None:
        """Write ``EXT-X-ENDLIST`` (the event is over)."""
        with self._lock:
            self._ended = True
            text = self._render()
        self._write(text)

    def _write(self, text: str) -> None:
        if self.path is not None:
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
        if self._discontinuity_sequence:
            header.append(f"{TAG_DISCONTINUITY_SEQUENCE}:{self._discontinuity_sequence}")
        if self.window is None:
            header.append(f"{TAG_PLAYLIST_TYPE}:EVENT")
        if self.init_uri is not None:
            header.append(f"{TAG_MAP}:{format_attribute_list([('URI', Quoted(self.init_uri))])}")
        segs = []
        mapped: str | None = None
        fmp4 = self.init_uri is not None
        for i, e in enumerate(self._entries):
            items: list[str | InitSection] = []
            if e.discontinuity and i > 0:
                items.append(TAG_DISCONTINUITY)
            if e.init_uri is not None and e.init_uri not in (mapped, self.init_uri):
                items.append(InitSection(e.init_uri))
                mapped = e.init_uri
                fmp4 = True
            if e.program_date_time is not None:
                items.append(f"{TAG_PROGRAM_DATE_TIME}:{_pdt(e.program_date_time)}")
            items.append(f"{TAG_EXTINF}:{e.duration:.3f},")
            segs.append(MediaSegment(uri=e.uri, duration=e.duration, sequence=e.sequence,
                                     items=list(items)))
        pl = MediaPlaylist(header=header, segments=segs,
                           trailer=[TAG_ENDLIST] if self._ended else [])
        return render_media_playlist(pl, [list(e.keys) for e in self._entries],
                                     version=6 if fmp4 else 3)
