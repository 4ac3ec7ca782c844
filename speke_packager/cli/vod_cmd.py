"""``encrypt-vod``: a clear HLS/DASH package or a media file in, an encrypted package out.

``--json`` prints one object: ``{"output", "scheme", "format", "manifests": [...],
"segments", "bytes_in", "bytes_out", "tracks": [{"manifest", "kind", "codec", "width",
"height", "channels", "kid", "track_type"}], "warnings": [...]}``. Keys are never printed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..constants import Scheme
from ..errors import UsageError
from ..storage.url import is_s3
from .keys_cmd import (
    add_speke_arguments,
    contract_from_args,
    drms_from_args,
    speke_client_from_args,
)
from .storage_args import add_storage_arguments, storage_options

# The pipeline (media, manifests, numpy, lxml) is imported by the handler only: building the
# parser must stay cheap (it runs for every command and for --help).
if TYPE_CHECKING:
    from ..keys.client import SpekeClient
    from ..pipeline.keysource import RawKeys, SpekeKeys
    from ..pipeline.options import VodOptions, VodResult

# The values of pipeline.options.OutputFormat (a test checks they agree).
FORMAT_CHOICES = ("hls", "dash", "both")

_HEX_IV = re.compile(r"(?:0[xX])?([0-9a-fA-F]{32})")


def parse_iv(text: str | None) -> bytes | None:
    if text is None:
        return None
    m = _HEX_IV.fullmatch(text.strip())
    if not m:
        raise UsageError("--iv must be 32 hex digits (16 bytes)")
    return bytes.fromhex(m.group(1))


def raw_key_specs(args: argparse.Namespace) -> list[str]:
    """The ``--key-file`` lines, then the ``--key`` values (of :func:`add_raw_key_arguments`)."""
    specs = list(args.key or [])
    if args.key_file:
        from ..pipeline.rawkeys import read_key_file

        specs = read_key_file(args.key_file) + specs
    return specs


def add_raw_key_arguments(p: argparse.ArgumentParser) -> None:
    """``--key``, ``--key-file``, ``--iv``, ``--key-uri``, ``--clearkey-license-url`` (shared by
    ``encrypt-vod`` and ``encrypt-live``)."""
    raw = p.add_argument_group("raw keys (instead of SPEKE)")
    raw.add_argument("--key", action="append", metavar="[video=|audio=]KID:KEY",
                     help="content key, 32 hex digits each; repeatable with video=/audio= "
                     "(visible to local users in the process list: prefer --key-file)")
    raw.add_argument("--key-file", type=Path, metavar="FILE",
                     help="read the --key values from FILE, one [video=|audio=]KID:KEY per line "
                     "(# comments; keep it chmod 600)")
    raw.add_argument("--iv", metavar="HEX", help="explicit 16-byte IV (32 hex digits) for "
                     "AES-128, SAMPLE-AES and cbcs (default: the key server's, else random)")
    raw.add_argument("--key-uri", metavar="URL", help="HLS identity key URI (serves the 16 raw "
                     "key bytes); {kid} is replaced by the KID in hex")
    raw.add_argument("--clearkey-license-url", metavar="URL",
                     help="W3C ClearKey licence URL for the DASH ContentProtection (dashif:Laurl)")


def add_layout_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--format``, ``--segment-duration``, ``--clear-lead`` (read by
    :func:`vod_options_from_args`; shared by ``encrypt-vod`` and ``encrypt-batch``, where they
    are the defaults of every row)."""
    p.add_argument("--format", choices=FORMAT_CHOICES,
                   help="output manifests (default: as the input; both for a media file)")
    p.add_argument("--segment-duration", type=float, default=6.0, metavar="S",
                   help="segment length for a media-file input (default 6; cut at key frames)")
    p.add_argument("--clear-lead", type=float, default=0.0, metavar="S",
                   help="leave the first S seconds clear (default 0)")


def key_source_from_args(
    args: argparse.Namespace,
    client: Callable[[argparse.Namespace], SpekeClient] = speke_client_from_args,
) -> RawKeys | SpekeKeys:
    """``--key``/``--key-file`` (raw keys) or ``--speke-url`` (a key server) as the library's
    key source; encrypt_vod checks the DRM systems against the format and scheme. ``client``
    makes the SPEKE client (encrypt-batch shares one per key server URL)."""
    from ..pipeline.keysource import RawKeys, SpekeKeys

    specs = raw_key_specs(args)
    if specs and args.speke_url:
        raise UsageError("give either --speke-url or --key/--key-file, not both")
    if specs:
        return RawKeys(tuple(specs), drm=drms_from_args(args) if args.drm else ())
    if not args.speke_url:
        raise UsageError("no keys: give --speke-url (with --content-id), --key KID:KEY or "
                         "--key-file FILE")
    if args.packaging:
        raise UsageError("encrypt-vod derives the SPEKE packaging from --format and --scheme; "
                         "drop --packaging")
    # (encrypt_vod replaces the packaging and scheme with those of --format and --scheme)
    contract = contract_from_args(args, packaging=())
    return SpekeKeys(client(args), contract)


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(), transient=True,
                  console=Console(stderr=True)) as bar:
        task = bar.add_task("encrypting", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _summary(r: VodResult) -> str:
    enc = sum(1 for t in r.tracks if t.kid)
    lines = [f"encrypted {enc} of {len(r.tracks)} tracks ({r.scheme.value}, "
             f"{r.segments} pieces) -> {r.output}"]
    lines += [f"  {m}" for m in r.manifests]
    lines += [f"warning: {w}" for w in r.warnings]
    return "\n".join(lines)


def _location(text: str) -> Path | str:
    return text if is_s3(text) else Path(text)


def vod_options_from_args(args: argparse.Namespace,
                          progress: Callable[[int, int], None] | None = None) -> VodOptions:
    """The :class:`VodOptions` of encrypt-vod's options (also those of an encrypt-batch row)."""
    from ..pipeline.options import OutputFormat, VodOptions, default_jobs

    return VodOptions(
        input=_location(args.input), output=_location(args.output),
        scheme=Scheme(args.scheme) if args.scheme else Scheme.CBCS,
        format=OutputFormat(args.format) if args.format else None,
        segment_duration=args.segment_duration, clear_lead=args.clear_lead,
        jobs=args.jobs if args.jobs else default_jobs(),
        force=args.force, key_uri=args.key_uri,
        clearkey_license_url=args.clearkey_license_url, iv=parse_iv(args.iv),
        progress=progress, segmenter=getattr(args, "segmenter", None),
        single_file=bool(getattr(args, "single_file", False)),
        storage=storage_options(args))


def _handler(args: argparse.Namespace) -> int:
    from ..pipeline.vod import encrypt_vod

    source = key_source_from_args(args)
    quiet = args.quiet or args.json
    with _progress(not quiet and sys.stderr.isatty()) as progress:
        result = encrypt_vod(vod_options_from_args(args, progress), source)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    elif not args.quiet:
        print(_summary(result))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "encrypt-vod",
        help="encrypt a clear HLS/DASH package or a media file into a multi-DRM package",
        description="INPUT is a clear HLS playlist (multivariant or media; TS or fMP4 "
        "segments), a clear DASH MPD (SegmentTemplate, SegmentList, SegmentBase) or a media "
        "file (.mp4 .mov .ts .mkv, segmented first with ffmpeg, stream copy). Keys come from "
        "SPEKE (--speke-url ...) or are given raw (--key). The output folder is written under a "
        "temporary name and renamed at the end: an error or Ctrl-C leaves no output. INPUT and "
        "--output may be s3://bucket/key URLs: an s3:// output is published segments first, "
        "manifests last, and removed again on failure.",
    )
    p.add_argument("input", help="clear .m3u8, .mpd or media file (path or s3:// URL)")
    p.add_argument("--output", "-o", required=True,
                   help="output folder or s3://bucket/prefix")
    add_layout_arguments(p)
    p.add_argument("--segmenter", choices=("native", "ffmpeg"),
                   help="how a media file is segmented: native (MP4/MOV to CMAF for cenc/cbcs, "
                   "encrypted as it is cut; the default where it applies) or ffmpeg (any "
                   "container, and MPEG-TS for aes-128/sample-aes)")
    p.add_argument("--single-file", action="store_true",
                   help="a media-file input: one file per rendition (init, sidx, fragments) "
                   "addressed by byte ranges (DASH SegmentBase, HLS EXT-X-BYTERANGE) instead "
                   "of one file per segment (native segmenter only)")
    p.add_argument("--jobs", type=int, default=0, metavar="N",
                   help="segments encrypted in parallel (default: the cores)")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    add_raw_key_arguments(p)
    add_speke_arguments(p)
    add_storage_arguments(p)
    p.set_defaults(func=_handler)
