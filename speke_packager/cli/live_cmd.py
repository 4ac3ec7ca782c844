"""``encrypt-live``: follow a folder where a clear live encoder writes segments (FFmpeg's HLS
muxer with fMP4 or MPEG-TS segments, FFmpeg's DASH muxer) and publish an encrypted live package
in another folder, keys rotating every ``--rotation`` seconds over SPEKE.

Each segment is taken once the encoder's manifest lists it and it stopped changing
(:class:`~speke_packager.pipeline.live.watch.FolderWatcher`), encrypted with its key period's
key, written atomically, and then the playlists are rewritten. OUTPUT may be an ``s3://bucket/prefix``
(``--endpoint-url`` for S3-compatible stores): each object is one PutObject, segments before
the manifests that name them; a write that fails after botocore's retries stops publishing with
the one-line error and exit code 9, and the manifests are not ended. Ctrl-C or SIGTERM end the
presentation (``EXT-X-ENDLIST``) and exit 0; so does the encoder ending its own stream, or
``--idle-timeout`` seconds without a new segment. A key that cannot be had stops publishing with
a one-line error and a non-zero exit (no clear segment, no segment with an unannounced key).
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import signal
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..constants import DrmSystem, Packaging, Scheme
from ..errors import UnsupportedMediaError, UsageError
from .keys_cmd import (
    add_speke_arguments,
    contract_from_args,
    drms_from_args,
    speke_client_from_args,
)
from .storage_args import add_storage_arguments, storage_options
from .vod_cmd import add_raw_key_arguments, parse_iv, raw_key_specs

if TYPE_CHECKING:
    from ..model import KeySet
    from ..pipeline.live import LivePackager, PeriodKeySource
    from ..pipeline.live.watch import MediaSegment
    from ..storage import S3Options

log = logging.getLogger("speke_packager.live")

NO_ROTATION = 10.0 ** 9  # seconds: one key period for the whole event


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return v


def _check_key_options(args: argparse.Namespace) -> list[str]:
    """Which options go together (checked before the encoder's folder is watched); returns the
    raw key specs (empty: SPEKE)."""
    specs = raw_key_specs(args)
    if specs and args.speke_url:
        raise UsageError("give either --speke-url or --key/--key-file, not both")
    if specs:
        from ..pipeline.keysource import RawKeys

        RawKeys(tuple(specs), drm=drms_from_args(args) if args.drm else ())  # syntax, --drm
        if args.rotation:
            raise UsageError("--rotation needs a key server (--speke-url): raw keys are one key "
                             "for the whole event")
        parse_iv(args.iv)
        return specs
    if not args.speke_url:
        raise UsageError("no keys: give --speke-url (with --content-id), --key KID:KEY or "
                         "--key-file FILE")
    if not args.content_id:
        raise UsageError("--content-id is required with --speke-url")
    if args.iv is not None:
        raise UsageError("--iv is for raw keys; with SPEKE the key server's IV (or "
                         "--explicit-iv) is used")
    if args.packaging:
        raise UsageError("encrypt-live derives the SPEKE packaging from the encoder's "
                         "segments; drop --packaging")
    if args.key_periods_per_request > 1 and args.speke_version != "1.0":
        raise UsageError("--key-periods-per-request above 1 needs --speke-version 1.0 (SPEKE "
                         "v2 asks for one key period per request)")
    return specs


def _key_source(args: argparse.Namespace, scheme: Scheme, container: str, rotation: float,
                schedule_origin: datetime) -> tuple[PeriodKeySource, tuple[DrmSystem, ...] | None]:
    """The key source (period index -> KeySet) and the DRMs to signal in HLS (None: all)."""
    specs = _check_key_options(args)
    iv = parse_iv(args.iv)
    if specs:
        from ..pipeline.keysource import RawKeys

        raw = RawKeys(tuple(specs), drm=drms_from_args(args) if args.drm else ())
        ks = raw(scheme)
        if iv is not None:
            ks = replace(ks, entries=tuple(replace(e, key=replace(e.key, iv=iv))
                                           for e in ks.entries))

        def fixed(index: int, ks: KeySet = ks) -> KeySet:
            return ks

        return fixed, raw.drm or None
    packaging = (Packaging.HLS_TS,) if container == "ts" else (Packaging.HLS_FMP4,
                                                                 Packaging.DASH)
    contract = contract_from_args(args, packaging=packaging, scheme=scheme)
    client = speke_client_from_args(args)
    if not rotation:
        def one(index: int) -> KeySet:
            return client.fetch(contract)

        return one, None
    from ..pipeline.live import SpekeKeySource
    from ..pipeline.rotation import RotationSchedule

    # v2.1 periods carry wall-clock start/end times (SpekeKeySource sends them for v2.1 only)
    sched = RotationSchedule(interval=rotation, origin=schedule_origin)
    return SpekeKeySource(client, contract, schedule=sched), None


_START_WAIT = 1.0  # seconds after the first complete segment for the other tracks to show up


class _Live:
    """The encoder's tracks -> one :class:`LivePackager`. Started once every track seen has a
    complete segment (and its init, fMP4) and the other tracks had ``_START_WAIT`` seconds to
    appear; segments are buffered until then. Media time: the encoder's, from its first
    segment on (time 0 of the key schedule); an encoder restart continues the timeline."""

    def __init__(self, args: argparse.Namespace, out: Path | str,
                 storage: S3Options | None = None) -> None:
        self.args = args
        self.out = out
        self.storage = storage
        self.packager: LivePackager | None = None
        self.inits: dict[str, bytes] = {}
        self.pending: list[MediaSegment] = []
        self.first_at: float | None = None
        self.names: dict[str, str] = {}  # encoder track -> rendition name
        self.ignored: set[str] = set()
        self.container = ""
        self.scheme: Scheme | None = None
        self.base: float | None = None  # encoder media time of schedule time 0
        self.offset = 0.0
        self.end_time = 0.0
        self.segments = 0
        self.periods: set[int] = set()

    # -- start -----------------------------------------------------------------------------------
    def _scheme(self, container: str) -> Scheme:
        args = self.args
        scheme = Scheme(args.scheme) if args.scheme else (
            Scheme.AES_128 if container == "ts" else Scheme.CBCS)
        if container == "ts" and scheme not in (Scheme.AES_128, Scheme.SAMPLE_AES):
            raise UsageError(f"MPEG-TS segments take --scheme aes-128 or sample-aes, not "
                             f"{scheme.value}")
        if container == "fmp4" and scheme is Scheme.SAMPLE_AES:
            raise UsageError("fMP4 segments take --scheme cenc, cbcs or aes-128 (SAMPLE-AES on "
                             "fMP4 is cbcs)")
        return scheme

    def _rendition_names(self, tracks: list[str]) -> dict[str, str]:
        """fMP4: ``video``, ``audio`` (``video-2``... for more); TS: the encoder's name."""
        from ..pipeline.live.tracks import init_facts

        out: dict[str, str] = {}
        used: set[str] = set()
        for t in tracks:
            if t in self.inits:
                try:
                    base = init_facts(self.inits[t]).kind.value.lower()
                except UnsupportedMediaError as exc:
                    raise UnsupportedMediaError(
                        f"{t}: {exc}; have the encoder write one track per rendition (FFmpeg's "
                        "HLS muxer: -var_stream_map 'v:0 a:0'; its DASH muxer does)") from None
            else:
                base = re.sub(r"[^A-Za-z0-9._~-]", "-", t).lstrip(".") or "main"
            name, n = base, 1
            while name in used or name in ("master", "manifest"):
                n += 1
                name = f"{base}-{n}"
            used.add(name)
            out[t] = name
        return out

    def ready(self, tracks: list[str], now: float) -> bool:
        """Start once every track seen has a complete segment and ``_START_WAIT`` seconds
        passed since the first one (an encoder writes its renditions' playlists one after the
        other: one not seen yet would be left out), or two segment durations later anyway."""
        if self.packager is not None or self.first_at is None:
            return False
        waited = now - self.first_at
        have = {m.track for m in self.pending}
        longest = max(m.duration for m in self.pending)
        return (all(t in have for t in tracks) and waited >= _START_WAIT) or \
            waited >= 2 * longest + _START_WAIT

    def start(self, tracks: list[str]) -> None:
        from datetime import UTC, datetime

        from ..pipeline.live import LiveKeyPolicy, LivePackager, LiveRendition
        from ..pipeline.rotation import RotationSchedule

        args = self.args
        have = {m.track for m in self.pending}
        for t in tracks:
            if t not in have:
                log.warning("%s: no complete segment yet; left out of the package", t)
                self.ignored.add(t)
        tracks = [t for t in tracks if t in have]
        container = self.pending[0].container
        scheme = self.scheme = self._scheme(container)
        self.container = container
        rotation = args.rotation or 0.0
        origin = datetime.now(UTC)
        source, drms = _key_source(args, scheme, container, rotation, origin)
        schedule = RotationSchedule(interval=rotation or NO_ROTATION)
        self.names = self._rendition_names(tracks)
        renditions = [LiveRendition(self.names[t], self.inits.get(t) if container == "fmp4"
                                    else None) for t in tracks]
        cmaf = container == "fmp4" and scheme in (Scheme.CENC, Scheme.CBCS)
        fmt = args.format
        if fmt in ("dash", "both") and not cmaf:
            if fmt == "dash":
                raise UsageError(f"DASH needs fMP4 segments with cenc or cbcs, not "
                                 f"{scheme.value} over {container}")
            fmt = "hls"
        policy = LiveKeyPolicy(lead=args.key_lead, grace=args.key_grace,
                               retries=max(0, args.retries), wait=args.key_wait,
                               periods_per_request=args.key_periods_per_request)
        target = max(1, math.ceil(max(m.duration for m in self.pending) * 1.5 - 1e-6))
        self.packager = LivePackager(
            source, schedule, scheme, self.out, renditions, hls=fmt in ("hls", "both"),
            dash=fmt in ("dash", "both"), window=args.window, key_uri=args.key_uri, drms=drms,
            clearkey_license_url=args.clearkey_license_url, key_policy=policy,
            target_duration=target, storage=self.storage)
        print(f"speke-packager: encrypting {', '.join(self.names.values())} ({container}) of "
              f"{args.input_dir} into {self.out} ({scheme.value}, "
              + (f"keys rotating every {rotation:g}s" if rotation else "one key period")
              + ")", file=sys.stderr)
        pending, self.pending = self.pending, []
        for m in pending:
            self._add(m)

    # -- events ----------------------------------------------------------------------------------
    def init(self, track: str, data: bytes) -> None:
        if self.packager is None:
            self.inits[track] = data
        elif track in self.names and self.inits.get(track) != data:
            log.warning("%s: the encoder wrote a new init segment; the package keeps the first "
                        "one (the same codec settings are assumed)", track)

    def media(self, seg: MediaSegment, now: float) -> None:
        if self.packager is None:
            if seg.container == "fmp4" and seg.track not in self.inits:
                return  # its init is not complete yet: the segment comes again
            self.pending.append(seg)
            self.first_at = self.first_at if self.first_at is not None else now
            return
        if seg.track not in self.names:
            if seg.track not in self.ignored:
                log.warning("%s: a track that appeared after the package started; ignored",
                            seg.track)
                self.ignored.add(seg.track)
            return
        self._add(seg)

    def _add(self, seg: MediaSegment) -> None:
        assert self.packager is not None
        if seg.container != self.container:
            raise UsageError(f"{seg.track}: {seg.container} segments after {self.container} "
                             "ones")
        restart = False
        if self.base is None:
            self.base = seg.start_time
        elif seg.discontinuity and seg.start_time - self.base + self.offset < self.end_time - 1:
            log.warning("%s: the encoder restarted (its timestamps went back); the output "
                        "timeline goes on", seg.track)
            self.offset, self.base, restart = self.end_time, seg.start_time, True
        t = max(0.0, seg.start_time - self.base + self.offset)
        duration = max(seg.duration, 1e-3)
        pub = self.packager.add_segment(self.names[seg.track], seg.data, start_time=t,
                                        duration=duration,
                                        discontinuity=restart or seg.discontinuity)
        self.end_time = max(self.end_time, t + seg.duration)
        self.segments += 1
        self.periods.add(pub.period)
        log.info("%s: %s (t=%.3f, key period %d)%s", pub.rendition, pub.uri, t, pub.period,
                 " key change" if pub.key_changed else "")

    def close(self, *, end: bool) -> None:
        if self.packager is not None:
            self.packager.close(end=end and self.segments > 0)


def _check_output(args: argparse.Namespace) -> Path | str:
    """OUTPUT as a folder or an ``s3://`` prefix, checked before the encoder is followed: a
    non-empty folder or prefix is refused without ``--force`` (as encrypt-vod does; with
    ``--force`` the package is written over what is there, nothing is deleted first). For a
    prefix this is also the first request to the store: a wrong endpoint or credentials fail
    here, before any key is fetched."""
    from .._io import check_output_folder
    from ..storage import ObjectStore, S3Url, is_s3

    text = str(args.output_dir)
    storage = storage_options(args)
    if not is_s3(text):
        if storage is not None:
            raise UsageError("--endpoint-url, --s3-region and --s3-profile are for an s3:// "
                             "OUTPUT")
        out = Path(text)
        check_output_folder(out, force=args.force)
        return out
    url = S3Url.parse(text)
    if not url.key.strip("/"):
        raise UsageError(f"the output {url} is a whole bucket; give a prefix "
                         "(s3://bucket/folder)")
    if not args.force:
        from ..errors import StorageError

        prefix = url.as_prefix()
        if ObjectStore(storage).any_under(prefix):
            raise StorageError(f"{prefix} is not empty (use --force to write into it)",
                               url=str(prefix), code="NotEmpty")
    return text


def _handler(args: argparse.Namespace) -> int:
    import time

    from ..errors import KeyRotationError
    from ..pipeline.live.watch import FolderWatcher, InitSegment, MediaSegment, StreamEnded

    if args.window < 1:
        raise UsageError("--window must be at least 1 segment")
    if args.key_grace < 0:
        raise UsageError("--key-grace must not be negative")
    _check_key_options(args)
    out = _check_output(args)
    watcher = FolderWatcher(args.input_dir, manifest=args.manifest,
                            poll_interval=args.poll_interval, settle=args.settle,
                            segment_timeout=args.segment_timeout)
    live = _Live(args, out, storage_options(args))
    reason = "the encoder ended its stream"
    ok = False
    last = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            events = watcher.scan()
            for ev in events:
                if isinstance(ev, InitSegment):
                    live.init(ev.track, ev.data)
                elif isinstance(ev, MediaSegment):
                    live.media(ev, now)
                elif isinstance(ev, StreamEnded):
                    log.info("%s: the encoder ended its stream", ev.track)
            if events:
                last = now
            if live.ready(watcher.tracks, now) or (watcher.ended and live.pending
                                                   and live.packager is None):
                live.start(watcher.tracks)
            if watcher.ended:
                break
            if args.idle_timeout is not None and now - last >= args.idle_timeout:
                reason = f"no new segment for {args.idle_timeout:g}s"
                break
            time.sleep(args.poll_interval)
        ok = True
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        reason = f"stopped by {signal.Signals(signum).name}"
        ok = True
    except KeyRotationError as exc:
        # no keys (past the grace time): stop publishing; the manifests stay as they are
        live.close(end=False)
        raise type(exc)(f"stopped publishing: {exc}", period=exc.period) from exc
    finally:
        if not ok:
            live.close(end=False)
    # a second signal while closing ends the process (the handler was reset to the default)
    live.close(end=True)
    if live.segments == 0:
        print(f"speke-packager: {reason}; no segment was published", file=sys.stderr)
        return 0 if reason.startswith("stopped") else 1
    print(f"speke-packager: {reason}: {live.segments} segments in {len(live.periods)} key "
          f"periods published to {out} (presentation ended)", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "encrypt-live",
        help="encrypt a live stream a clear encoder writes into a folder (HLS/DASH segments)",
        description="INPUT_DIR is the folder a clear live encoder writes to (FFmpeg's HLS muxer "
        "with fMP4 or MPEG-TS segments, or its DASH muxer); each segment is taken once the "
        "encoder's playlist/MPD lists it and it stopped changing, encrypted with its key "
        "period's key and published in OUTPUT (a folder, or an s3://bucket/prefix: see "
        "--endpoint-url) with live playlists. Ctrl-C or SIGTERM end the presentation "
        "(EXT-X-ENDLIST) and exit 0; a write to object storage failing after its retries "
        "stops publishing with exit code 9 and the presentation not ended.",
    )
    p.add_argument("input_dir", type=Path, help="folder the clear encoder writes to")
    p.add_argument("output_dir", metavar="OUTPUT",
                   help="folder or s3://bucket/prefix for the encrypted live package")
    p.add_argument("--manifest", metavar="NAME",
                   help="the encoder's playlist or MPD in INPUT_DIR to follow (default: its MPD, "
                   "else every HLS media playlist)")
    p.add_argument("--rotation", type=_positive, metavar="SECONDS",
                   help="key period length: a new key every SECONDS of media time (a multiple "
                   "of the segment duration; needs --speke-url; default: one key)")
    p.add_argument("--format", choices=("hls", "dash", "both"), default="both",
                   help="manifests: HLS multivariant + media playlists, a dynamic DASH MPD, or "
                   "both (default; DASH needs fMP4 segments with cenc or cbcs, else HLS only)")
    p.add_argument("--window", type=int, default=6, metavar="SEGMENTS",
                   help="segments in each live playlist and DASH Representation (default 6)")
    p.add_argument("--key-lead", type=float, default=None, metavar="SECONDS",
                   help="fetch the next key period's keys this long before it starts (default: "
                   "one rotation interval)")
    p.add_argument("--key-grace", type=float, default=0.0, metavar="SECONDS",
                   help="when a key period's keys are missing, keep using the previous "
                   "period's keys for this many seconds of media time (logged at every "
                   "segment), then stop with an error (default 0: stop at once)")
    p.add_argument("--key-wait", type=float, default=2.0, metavar="SECONDS",
                   help="with --key-grace: how long a segment waits for its period's keys "
                   "still being fetched before the previous keys stand in (default 2)")
    p.add_argument("--key-periods-per-request", type=int, default=1, metavar="N",
                   help="key periods asked for in one SPEKE request (more than 1: SPEKE v1 "
                   "only; default 1)")
    p.add_argument("--poll-interval", type=_positive, default=0.25, metavar="SECONDS",
                   help="how often INPUT_DIR is looked at (default 0.25)")
    p.add_argument("--settle", type=float, default=None, metavar="SECONDS",
                   help="a listed segment must stay unchanged this long before it is read "
                   "(default: the poll interval)")
    p.add_argument("--segment-timeout", type=_positive, default=30.0, metavar="SECONDS",
                   help="skip (with a warning) a listed segment not complete after this long "
                   "(default 30)")
    p.add_argument("--idle-timeout", type=_positive, default=None, metavar="SECONDS",
                   help="end the presentation when the encoder wrote nothing for this long "
                   "(default: wait for the encoder's end or a signal)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty OUTPUT folder or s3:// prefix")
    add_raw_key_arguments(p)
    add_speke_arguments(p)
    add_storage_arguments(p)
    # a muxed HLS rendition (FFmpeg's default) takes one key for its video and audio
    p.set_defaults(func=_handler, video_preset="SHARED", audio_preset="SHARED")
