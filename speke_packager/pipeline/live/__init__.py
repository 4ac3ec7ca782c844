"""Live packaging for transcoders: one segment in, one encrypted segment out, keys rotating per
key period over SPEKE (speke.md §9, media-encryption.md §1, §4, §8).

:class:`LiveSession` holds a key source (``period index -> KeySet``; :class:`SpekeKeySource`
asks a SPEKE server one period per request), a :class:`~.rotation.RotationSchedule` and the
scheme. The caller owns I/O and threads: it hands over each segment with its media start time
and sequence number and gets back a :class:`LiveSegment` (encrypted bytes, the key period, the
``EXT-X-KEY`` lines to write before it when the key changed, the moof pssh boxes of fMP4 in-band
rotation). The next period's keys are fetched in a background thread ``lead`` seconds before the
boundary; only the current and next periods are kept. :class:`LiveKeyPolicy` sets the lead,
retries, the grace time during which missing keys are replaced by the previous period's, and
the key periods per SPEKE request (see :mod:`.periods`). :class:`LivePlaylist` keeps a sliding
window of a media playlist and writes it atomically.

:class:`LivePackager` is the whole live package on top of a session: segments of every
rendition in, the encrypted segments, HLS multivariant + media playlists and a dynamic DASH
MPD (a new Period per key period) out, through a :class:`LiveWriter` (files by default:
:class:`FolderWriter`).
"""

from __future__ import annotations

from .package import LivePackager, LiveRendition, PublishedSegment
from .periods import LiveKeyPolicy, PeriodKeySource, SpekeKeySource
from .playlist import LivePlaylist
from .session import LiveSegment, LiveSession
from .writer import FolderWriter, LiveWriter

__all__ = [
    "FolderWriter",
    "LiveKeyPolicy",
    "LivePackager",
    "LivePlaylist",
    "LiveRendition",
    "LiveSegment",
    "LiveSession",
    "LiveWriter",
    "PeriodKeySource",
    "PublishedSegment",
    "SpekeKeySource",
]
