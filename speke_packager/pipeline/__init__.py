"""The only package that knows every stage: keys, media encryption and manifests meet here.

:func:`encrypt_vod` turns a clear HLS/DASH package or a media file into an encrypted package;
:class:`LiveSession` encrypts live segments one at a time with keys rotating per key period;
:class:`LivePackager` publishes a whole live HLS + DASH package on top of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .keysource import RawKeys, SpekeKeys, vod_packaging
from .options import KeySource, OutputFormat, TrackSummary, VodOptions, VodResult
from .rawkeys import parse_raw_key, raw_keyset
from .rotation import RotationSchedule
from .vod import encrypt_vod

if TYPE_CHECKING:
    from .live import (
        FolderWriter,
        LiveKeyPolicy,
        LivePackager,
        LivePlaylist,
        LiveRendition,
        LiveSegment,
        LiveSession,
        LiveWriter,
        PeriodKeySource,
        PublishedSegment,
        SpekeKeySource,
    )

_LIVE = ("FolderWriter", "LiveKeyPolicy", "LivePackager", "LivePlaylist", "LiveRendition",
         "LiveSegment", "LiveSession", "LiveWriter", "PeriodKeySource", "PublishedSegment",
         "SpekeKeySource")


def __getattr__(name: str) -> Any:
    """The live API is imported on first use: it pulls in the SPEKE client (requests), which
    encrypt-vod with raw keys never needs."""
    if name in _LIVE:
        from . import live

        return getattr(live, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FolderWriter",
    "KeySource",
    "LiveKeyPolicy",
    "LivePackager",
    "LivePlaylist",
    "LiveRendition",
    "LiveSegment",
    "LiveSession",
    "LiveWriter",
    "OutputFormat",
    "PeriodKeySource",
    "PublishedSegment",
    "RawKeys",
    "RotationSchedule",
    "SpekeKeySource",
    "SpekeKeys",
    "TrackSummary",
    "VodOptions",
    "VodResult",
    "encrypt_vod",
    "parse_raw_key",
    "raw_keyset",
    "vod_packaging",
]
