"""HLS playlists and DASH MPDs: read clear manifests, write them back with DRM signaling.

:mod:`.hls` (media and multivariant playlists, ``EXT-X-KEY`` / ``EXT-X-SESSION-KEY``; attribute
lists through the base layer's ``speke_packager._hls_attrs``), :mod:`.hls_signaling` (key tags
from SPEKE signaling or raw keys), :mod:`.dash` (MPD segments and ContentProtection).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .hls import (
    HlsKey,
    MediaPlaylist,
    MultivariantPlaylist,
    parse_media_playlist,
    parse_multivariant_playlist,
    render_media_playlist,
    render_multivariant_playlist,
)
from .hls_signaling import hls_keys, hls_session_keys

if TYPE_CHECKING:
    from .dash import content_protections, parse_mpd, render_mpd, representation_segments

_DASH = ("content_protections", "parse_mpd", "render_mpd", "representation_segments")


def __getattr__(name: str) -> Any:
    """The DASH names are imported on first use: they pull in lxml, which HLS jobs never
    need."""
    if name in _DASH:
        from . import dash

        return getattr(dash, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "HlsKey",
    "MediaPlaylist",
    "MultivariantPlaylist",
    "content_protections",
    "hls_keys",
    "hls_session_keys",
    "parse_media_playlist",
    "parse_mpd",
    "parse_multivariant_playlist",
    "render_media_playlist",
    "render_mpd",
    "render_multivariant_playlist",
    "representation_segments",
]
