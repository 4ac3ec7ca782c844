"""Raw keys given by the user (``--key KID:KEY``, ``--key video=KID:KEY``, or the same lines in
a ``--key-file``) as a KeySet."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from uuid import UUID

from .._io import warn_if_exposed
from ..constants import DrmSystem, Scheme
from ..errors import UsageError
from ..model import AudioFilter, ContentKey, DrmSignal, KeyEntry, KeySet, VideoFilter

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_LABELS = {"video": "VIDEO", "audio": "AUDIO", "all": "ALL"}


def parse_raw_key(text: str) -> tuple[str, UUID, bytes]:
    """``[video=|audio=|all=]KID:KEY`` -> (track type, KID, key). Errors never echo the key."""
    label = "ALL"
    spec = text.strip()
    if "=" in spec.split(":", 1)[0]:
        name, _, spec = spec.partition("=")
        if name.strip().lower() not in _LABELS:
            raise UsageError(f"--key: unknown track label {name!r} (use video=, audio= or all=)")
        label = _LABELS[name.strip().lower()]
    kid_s, sep, key_s = spec.partition(":")
    if not sep:
        raise UsageError("--key expects KID:KEY (32 hex digits each)")
    try:
        kid = UUID(kid_s.strip())
    except ValueError:
        raise UsageError(f"--key: KID {kid_s.strip()!r} is not 32 hex digits or a UUID") from None
    if not _HEX32.fullmatch(key_s.strip()):
        raise UsageError(f"--key for KID {kid}: the key must be 32 hex digits")
    return label, kid, bytes.fromhex(key_s.strip())


def raw_keyset(specs: Sequence[str], scheme: Scheme, *, content_id: str = "raw",
               clearkey: bool = False) -> KeySet:
    """A KeySet from ``--key`` options: one unlabelled key for every track, or labelled
    ``video=`` / ``audio=`` keys (a track type with no key stays clear).

    ``clearkey``: the keys carry W3C ClearKey signaling (no data: the KID is all a ClearKey
    HLS tag or DASH descriptor names), so HLS fMP4 gets a ``KEYFORMAT="org.w3.clearkey"`` tag
    and DASH a ClearKey descriptor, as from a key server's ClearKey answer."""
    if not specs:
        raise UsageError("no keys: give --speke-url or --key KID:KEY")
    entries: list[KeyEntry] = []
    seen: set[str] = set()
    kids: set[UUID] = set()
    for spec in specs:
        label, kid, key = parse_raw_key(spec)
        if label in seen:
            raise UsageError(f"--key: more than one key for {label.lower()} tracks")
        if kid in kids:
            raise UsageError(f"--key: KID {kid} given twice")
        seen.add(label)
        kids.add(kid)
        vf: tuple[VideoFilter, ...] = (VideoFilter(),) if label == "VIDEO" else ()
        af: tuple[AudioFilter, ...] = (AudioFilter(),) if label == "AUDIO" else ()
        drm = (DrmSignal(drm=DrmSystem.CLEARKEY, system_id=DrmSystem.CLEARKEY.system_id),) \
            if clearkey else ()
        entries.append(KeyEntry(key=ContentKey(kid=kid, key=key), track_type=label,
                                video_filters=vf, audio_filters=af, drm=drm))
    if "ALL" in seen and len(seen) > 1:
        raise UsageError("--key: give either one KID:KEY for all tracks or video=/audio= keys")
    return KeySet(content_id=content_id, scheme=scheme, entries=tuple(entries), version=None)


_MAX_KEY_FILE = 1 << 20


def read_key_file(path: str | os.PathLike[str]) -> list[str]:
    """The key lines of a key file: one ``[video=|audio=|all=]KID:KEY`` per line, blank lines
    and ``#`` comments ignored. The same syntax as ``--key``, but out of the process list
    (command lines are visible to every local user); a warning is logged when the file can be
    read by group or others. Errors name the file and line, never the key."""
    where = os.fspath(path)
    warn_if_exposed(path, "key file")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        raise UsageError(f"cannot read key file {where}: {exc.strerror or exc}") from None
    if len(raw) > _MAX_KEY_FILE:
        raise UsageError(f"key file {where} is larger than 1 MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"key file {where} is not UTF-8 text") from None
    lines: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        spec = line.split("#", 1)[0].strip()
        if not spec:
            continue
        try:
            parse_raw_key(spec)
        except UsageError as exc:
            raise UsageError(f"key file {where}, line {number}: {exc}") from None
        lines.append(spec)
    if not lines:
        raise UsageError(f"key file {where} holds no KID:KEY line")
    return lines
