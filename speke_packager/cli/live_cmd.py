"""``encrypt-live``: follow a folder where a clear live encoder writes segments (FFmpeg's HLS
muxer with fMP4 or MPEG-TS segments, FFmpeg's DASH muxer) and publish an encrypted live package
in another folder, keys rotating every ``--rotation`` seconds over SPEKE.

Each segment is taken once the encoder's manifest lists it and it stopped changing
(:class:`~speke_packager.pipeline.live.watch.FolderWatcher`), encrypted with its key period's
key, written atomically, and then the playlists are rewritten. Ctrl-C or SIGTERM end the
presentation (``EXT-X-ENDLIST``) and exit 0; so does the encoder ending its own stream, or
``--idle-timeout`` seconds without a new segment. A key that cannot be had stops publishing with
a one-line error and a non-zero exit (no clear segment, no segment with an unannounced key).
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..constants import DrmSystem, Packaging, Scheme
from ..errors import UsageError
from .keys_cmd import (
    add_speke_arguments,
    contract_from_args,
    drms_from_args,
    speke_client_from_args,
)
from .vod_cmd import add_raw_key_arguments, parse_iv, raw_key_specs

if TYPE_CHECKING:
    from ..model import KeySet
    from ..pipeline.live import LiveSession, PeriodKeySource
    from ..pipeline.live.watch import MediaSegment

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
    return specs


def _key_source(args: argparse.Namespace, scheme: Scheme, container: str, rotation: float,
                schedule_origin: object) -> tuple[PeriodKeySource, tuple[DrmSystem, ...] | None]:
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

    # v2.1 periods carry wall-clock start/end times; earlier versions only the index
    origin = schedule_origin if args.speke_version == "2.1" else None
    sched = RotationSchedule(interval=rotation, origin=origin)  # type: ignore[arg-type]
    return SpekeKeySource(client, contract, schedule=sched), None


class _Output:
    """One encrypted HLS media playlist per encoder track in ``out`` (window of ``window``),
    segments written atomically before the playlist names them; segments that left the window
    are deleted after another window."""

    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args = args
        self.out = out
        self.session: LiveSession | None = None
        self.inits: dict[str, bytes] = {}
        self.container = ""
        self.scheme: Scheme | None = None
        self.base: float | None = None  # encoder media time of the output's time 0
        self.offset = 0.0  # output time added after an encoder restart
        self.end_time = 0.0
        self.seq: dict[str, int] = {}
        self.written: dict[str, list[Path]] = {}
        self.playlists: dict[str, object] = {}
        self.segments = 0
        self.periods: set[int] = set()

    def _start(self, container: str) -> LiveSession:
        from datetime import UTC, datetime

        from ..pipeline.live import LiveSession
        from ..pipeline.rotation import RotationSchedule

        args = self.args
        self.container = container
        if args.scheme:
            scheme = Scheme(args.scheme)
        else:
            scheme = Scheme.AES_128 if container == "ts" else Scheme.CBCS
        if container == "ts" and scheme not in (Scheme.AES_128, Scheme.SAMPLE_AES):
            raise UsageError(f"MPEG-TS segments take --scheme aes-128 or sample-aes, not "
                             f"{scheme.value}")
        if container == "fmp4" and scheme is Scheme.SAMPLE_AES:
            raise UsageError("fMP4 segments take --scheme cenc, cbcs or aes-128 (SAMPLE-AES on "
                             "fMP4 is cbcs)")
        self.scheme = scheme
        rotation = args.rotation or 0.0
        source, drms = _key_source(args, scheme, container, rotation, datetime.now(UTC))
        schedule = RotationSchedule(interval=rotation or NO_ROTATION, lead=args.key_lead)
        key_uri = args.key_uri
        self.session = LiveSession(source, schedule, scheme, inits=self.inits or None,
                                   key_uri=key_uri, drms=drms,
                                   reuse_last_key_on_failure=args.key_grace > 0)
        print(f"speke-packager: encrypting {container} segments of {args.input_dir} into "
              f"{self.out} ({scheme.value}, "
              + (f"keys rotating every {rotation:g}s" if rotation else "one key period")
              + ")", file=sys.stderr)
        return self.session

    def init(self, track: str, data: bytes) -> None:
        if self.session is not None and track in self.inits and self.inits[track] != data:
            log.warning("%s: the encoder wrote a new init segment; the output keeps the first "
                        "one (same codec settings assumed)", track)
            return
        if self.session is not None and track not in self.inits:
            raise UsageError(f"track {track!r} appeared after the live session started: "
                             "start encrypt-live with all of the encoder's outputs present")
        self.inits[track] = data

    def media(self, seg: MediaSegment) -> None:
        from .._io import write_bytes_atomic
        from ..pipeline.live import LivePlaylist

        session = self.session or self._start(seg.container)
        if seg.container != self.container:
            raise UsageError(f"{seg.track}: {seg.container} segments after {self.container} "
                             "ones")
        if self.base is None:
            self.base = seg.start_time
        elif seg.discontinuity and seg.start_time - self.base + self.offset < self.end_time - 1:
            log.warning("%s: the encoder restarted (timestamps went back); continuing the "
                        "output timeline", seg.track)
            self.offset = self.end_time
            self.base = seg.start_time
        t = max(0.0, seg.start_time - self.base + self.offset)
        n = self.seq.get(seg.track, 0)
        enc = session.encrypt_segment(seg.track, seg.data, start_time=t, sequence=n)
        ext = ".ts" if self.container == "ts" else ".m4s"
        name = f"{seg.track}_{n}{ext}"
        write_bytes_atomic(self.out / name, enc.data)
        pl = self.playlists.get(seg.track)
        if pl is None:
            init_uri = None
            if self.container == "fmp4":
                init_uri = f"{seg.track}_init.mp4"
                write_bytes_atomic(self.out / init_uri,
                                   session.encrypt_init(seg.track, start_time=t))
            pl = self.playlists[seg.track] = LivePlaylist(
                self.out / f"{seg.track}.m3u8", window=self.args.window,
                target_duration=max(1, math.ceil(seg.duration * 1.5 - 1e-6)), init_uri=init_uri)
        assert isinstance(pl, LivePlaylist)
        pl.add(name, max(seg.duration, 1e-3), enc)
        self.seq[seg.track] = n + 1
        self.end_time = max(self.end_time, t + seg.duration)
        self.segments += 1
        self.periods.add(enc.period)
        if enc.reused_key:
            log.warning("%s segment %d: key period %d uses the previous period's key (the key "
                        "server did not answer)", seg.track, n, enc.period)
        log.info("%s: %s (t=%.3f, period %d)%s", seg.track, name, t, enc.period,
                 " key change" if enc.key_changed else "")
        files = self.written.setdefault(seg.track, [])
        files.append(self.out / name)
        while len(files) > 2 * self.args.window:
            files.pop(0).unlink(missing_ok=True)

    def close(self) -> None:
        from ..pipeline.live import LivePlaylist

        for pl in self.playlists.values():
            assert isinstance(pl, LivePlaylist)
            pl.end()
        if self.session is not None:
            self.session.close()


def _handler(args: argparse.Namespace) -> int:
    from .._io import check_output_folder
    from ..pipeline.live.watch import FolderWatcher, InitSegment, MediaSegment, StreamEnded

    if args.window < 1:
        raise UsageError("--window must be at least 1 segment")
    if args.key_grace < 0:
        raise UsageError("--key-grace must not be negative")
    _check_key_options(args)
    out = Path(args.output_dir)
    check_output_folder(out, force=args.force)
    out.mkdir(parents=True, exist_ok=True)
    watcher = FolderWatcher(args.input_dir, manifest=args.manifest,
                            poll_interval=args.poll_interval, settle=args.settle,
                            segment_timeout=args.segment_timeout)
    output = _Output(args, out)
    stop = threading.Event()
    reason = "the encoder ended its stream"
    try:
        for ev in watcher.follow(stop=stop, idle_timeout=args.idle_timeout):
            if isinstance(ev, InitSegment):
                output.init(ev.track, ev.data)
            elif isinstance(ev, MediaSegment):
                output.media(ev)
            elif isinstance(ev, StreamEnded):
                log.info("%s: the encoder ended its stream", ev.track)
        if not watcher.ended:
            reason = f"no new segment for {args.idle_timeout:g}s"
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        reason = f"stopped by {signal.Signals(signum).name}"
    # a second signal while closing ends the process (the handler was reset to the default)
    output.close()
    if output.segments == 0:
        print(f"speke-packager: {reason}; no segment was published", file=sys.stderr)
        return 0 if reason.startswith("stopped") else 1
    print(f"speke-packager: {reason}: {output.segments} segments in "
          f"{len(output.periods)} key periods published to {out} (EXT-X-ENDLIST written)",
          file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "encrypt-live",
        help="encrypt a live stream a clear encoder writes into a folder (HLS/DASH segments)",
        description="INPUT_DIR is the folder a clear live encoder writes to (FFmpeg's HLS muxer "
        "with fMP4 or MPEG-TS segments, or its DASH muxer); each segment is taken once the "
        "encoder's playlist/MPD lists it and it stopped changing, encrypted with its key "
        "period's key and published in OUTPUT_DIR with live playlists. Ctrl-C or SIGTERM end "
        "the presentation (EXT-X-ENDLIST) and exit 0.",
    )
    p.add_argument("input_dir", type=Path, help="folder the clear encoder writes to")
    p.add_argument("output_dir", type=Path, help="folder for the encrypted live package")
    p.add_argument("--manifest", metavar="NAME",
                   help="the encoder's playlist or MPD in INPUT_DIR to follow (default: its MPD, "
                   "else every HLS media playlist)")
    p.add_argument("--rotation", type=_positive, metavar="SECONDS",
                   help="key period length: a new key every SECONDS of media time (a multiple "
                   "of the segment duration; needs --speke-url; default: one key)")
    p.add_argument("--window", type=int, default=6, metavar="SEGMENTS",
                   help="segments in each live playlist (default 6)")
    p.add_argument("--key-lead", type=float, default=None, metavar="SECONDS",
                   help="fetch the next key period's keys this long before it starts (default: "
                   "one rotation interval)")
    p.add_argument("--key-grace", type=float, default=0.0, metavar="SECONDS",
                   help="when the key server fails, keep using the current keys this long "
                   "(logged at every segment) before stopping (default 0: stop at once)")
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
    p.add_argument("--force", action="store_true", help="write into a non-empty OUTPUT_DIR")
    add_raw_key_arguments(p)
    add_speke_arguments(p)
    # a muxed HLS rendition (FFmpeg's default) takes one key for its video and audio
    p.set_defaults(func=_handler, video_preset="SHARED", audio_preset="SHARED")
