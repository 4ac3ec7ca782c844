"""The jobs file of ``encrypt-batch``: JSON Lines (one object per line) or CSV (a header row).

One row per asset. Field names are ``encrypt-vod``'s option names, with ``_`` or ``-``:

==========================  ====================================================================
``input`` (required)        clear .m3u8, .mpd or media file
``output`` (required)       output folder
``id``                      asset id for the report and task names: letters, digits, ``. _ -``
                            (default ``row-N``, N the row's line number)
``scheme``                  cenc, cbcs, aes-128, sample-aes (default: the command's)
``format``                  hls, dash, both (default: as the input; both for a media file)
``content_id``              SPEKE content id (required with a key server)
``drm``                     DRM systems, ``"widevine,playready"`` or a JSON list
``speke_url``               this asset's key server (default: the command's ``--speke-url``)
``speke_version``           1.0, 2.0, 2.1
``video_preset``            SPEKE v2 video preset
``audio_preset``            SPEKE v2 audio preset
``explicit_iv``             true / false
``key``                     raw keys ``[video=|audio=|all=]KID:KEY``: a JSON list, or one string
                            with the specs separated by spaces or ``;`` (prefer ``key_file``);
                            this row then uses no key server (unless it names ``speke_url``:
                            an error)
``key_file``                file of raw keys, one spec per line (as ``key``)
``iv``                      explicit IV, 32 hex digits
``segment_duration``        seconds (media-file input)
``clear_lead``              seconds
``single_file``             true / false: one file per rendition (media-file input, native
                            segmenter; see ``encrypt-vod --single-file``)
``key_uri``                 HLS identity key URI (``{kid}`` is replaced)
``clearkey_license_url``    ClearKey licence URL for the DASH ContentProtection
==========================  ====================================================================

An empty CSV cell or a JSON ``null`` means "not given". A row with an unknown field, a value of
the wrong type or no input/output is reported as failed on its own; the other rows run.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import UsageError

FIELDS = frozenset({
    "id", "input", "output", "scheme", "format", "content_id", "drm", "speke_url",
    "speke_version", "video_preset", "audio_preset", "explicit_iv", "key", "key_file", "iv",
    "segment_duration", "clear_lead", "key_uri", "clearkey_license_url", "single_file",
})
_NUMBERS = frozenset({"segment_duration", "clear_lead"})
_MAX_FILE = 256 << 20
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(slots=True)
class Row:
    """One asset's fields (normalised names and types), or why the row is bad."""

    line: int
    asset: str
    fields: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def __repr__(self) -> str:  # (a row may hold raw keys)
        return f"Row({self.asset}, line {self.line})"


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"{name} must be true or false")


def _normalise(line: int, raw: dict[str, Any]) -> Row:
    fields: dict[str, Any] = {}
    asset = f"row-{line}"
    rid = next((v for k, v in raw.items() if k is not None and str(k).strip().lower() == "id"),
               None)
    if isinstance(rid, str) and 0 < len(rid.strip()) <= 100 and set(rid.strip()) <= _ID_CHARS:
        asset = rid.strip()
    try:
        for k, v in raw.items():
            if k is None:
                raise ValueError("more cells than header columns")
            name = str(k).strip().lower().replace("-", "_")
            if name not in FIELDS:
                raise ValueError(f"unknown field {str(k)[:40]!r}")
            if v is None or (isinstance(v, str) and not v.strip()):
                continue
            if name in _NUMBERS:
                if isinstance(v, bool):
                    raise ValueError(f"{name} must be a number")
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    raise ValueError(f"{name} must be a number") from None
            elif name in ("explicit_iv", "single_file"):
                v = _bool(name, v)
            elif name in ("drm", "key"):
                if isinstance(v, list) and all(isinstance(x, str) for x in v):
                    v = [x.strip() for x in v if x.strip()]
                elif isinstance(v, str):
                    sep = "," if name == "drm" else None
                    v = [x.strip() for x in v.replace(";", " " if sep is None else ",")
                         .split(sep) if x.strip()]
                else:
                    raise ValueError(f"{name} must be a string or a list of strings")
            elif not isinstance(v, str):
                raise ValueError(f"{name} must be a string")
            else:
                v = v.strip()
            fields[name] = v
        if "id" in fields:
            aid = fields["id"]
            if not (0 < len(aid) <= 100) or not set(aid) <= _ID_CHARS:
                raise ValueError("id must be 1-100 letters, digits, '.', '_' or '-'")
            asset = aid
        for need in ("input", "output"):
            if need not in fields:
                raise ValueError(f"no {need}")
    except ValueError as exc:
        return Row(line, asset, fields, error=f"row {line}: {exc}")
    return Row(line, asset, fields)


def read_jobs(path: Path) -> list[Row]:
    """The rows of a ``.jsonl`` / ``.csv`` jobs file (the suffix decides; ``.json`` and
    ``.ndjson`` are JSON Lines too). A file that cannot be read at all is a UsageError."""
    try:
        if path.stat().st_size > _MAX_FILE:
            raise UsageError(f"{path}: jobs file larger than {_MAX_FILE >> 20} MiB")
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    suffix = path.suffix.lower()
    rows: list[Row] = []
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames:
            raise UsageError(f"{path}: no header row")
        try:
            for rec in reader:
                if not any((v or "").strip() for k, v in rec.items() if k is not None):
                    continue
                rows.append(_normalise(reader.line_num, dict(rec)))
        except csv.Error as exc:
            raise UsageError(f"{path}: line {reader.line_num}: {exc}") from None
    elif suffix in (".jsonl", ".ndjson", ".json"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                rows.append(Row(n, f"row-{n}", error=f"row {n}: not JSON ({exc.msg})"))
                continue
            if not isinstance(obj, dict):
                rows.append(Row(n, f"row-{n}", error=f"row {n}: not a JSON object"))
                continue
            rows.append(_normalise(n, obj))
    else:
        raise UsageError(f"{path}: the jobs file must be .jsonl or .csv")
    if not rows:
        raise UsageError(f"{path}: no jobs")
    return rows
