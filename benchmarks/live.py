"""``python -m benchmarks --live``: the live packaging session (:class:`LivePackager`) with the
file writer — segments per second and the latency it adds per segment.

Clear live-style segments are cut by FFmpeg's HLS muxer once (cached): demuxed H.264 + AAC fMP4
for cenc and cbcs (HLS + DASH from the same files), muxed MPEG-TS for AES-128 and SAMPLE-AES.
Keys come from the local SPEKE key server in a child process (its own GIL), rotating every
``--live-rotation`` seconds with the default prefetch. Each segment is handed over from memory
(as a transcoder would) and timed from the call until it returns, i.e. until the encrypted
segment, its init when new and every manifest naming it are written (atomic renames): that is
the added latency, p50/p99/max over every segment but each rendition's first (warm-up: probing,
imports; reported apart), and the segments that start a key period also apart.
Segments per second = segments / wall time of the whole run (one thread per rendition). The run
goes faster than real time, so before the first segment of a key period a thread waits, untimed,
until the prefetch of that period's keys is done (a live feed gives it ``rotation - lead``
seconds of wall clock); those waits are reported and taken out of the wall time.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from speke_packager._tools import find_tool

from .keybench import KeyServerProcess, _percentile

SEGMENT = 2.0
SCHEMES = ("cbcs", "cenc", "aes-128", "sample-aes")


@dataclass(frozen=True)
class LiveMedia:
    root: Path
    count: int

    def init(self, name: str) -> bytes:
        return (self.root / f"{name}_init.mp4").read_bytes()

    def segment(self, name: str, i: int) -> bytes:
        ext = "ts" if name == "ts" else "m4s"
        return (self.root / f"{name}{i}.{ext}").read_bytes()


def make_media(cache: Path, seconds: int, height: int, *, log: bool) -> LiveMedia:
    """Clear segments of ``seconds`` seconds (cached under ``cache``)."""
    width = height * 16 // 9
    root = cache / f"live-{seconds}s-{height}p"
    count = int(seconds / SEGMENT)
    if (root / "done").exists():
        return LiveMedia(root, count)
    ffmpeg = find_tool("ffmpeg")
    assert ffmpeg is not None
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if log:
        print(f"[bench] live: cutting {seconds}s of {width}x{height} clear segments", flush=True)
    src = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=25:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    h264 = ["-c:v", "libx264", "-preset", "superfast", "-b:v", f"{max(800, height * 4)}k",
            "-pix_fmt", "yuv420p", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0"]
    aac = ["-c:a", "aac", "-b:a", "128k"]
    jobs = {"video": ["-map", "0:v", *h264], "audio": ["-map", "1:a", *aac],
            "ts": ["-map", "0:v", "-map", "1:a", *h264, *aac]}
    for name, args in jobs.items():
        ext = "ts" if name == "ts" else "m4s"
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *src, *args, "-f", "hls",
               "-hls_time", str(SEGMENT), "-hls_list_size", "0",
               "-hls_segment_filename", str(tmp / f"{name}%d.{ext}")]
        if name != "ts":
            cmd += ["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", f"{name}_init.mp4"]
        subprocess.run([*cmd, str(tmp / f"{name}.m3u8")], check=True, capture_output=True)
    (tmp / "done").write_text("ok\n")
    shutil.rmtree(root, ignore_errors=True)
    tmp.replace(root)
    return LiveMedia(root, count)


def _contract(scheme: str) -> object:
    from speke_packager.constants import DrmSystem, Packaging, Scheme, SpekeVersion
    from speke_packager.keys import EncryptionContract

    s = Scheme(scheme)
    ts = s in (Scheme.AES_128, Scheme.SAMPLE_AES)
    drm = (DrmSystem.AES128,) if ts else (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY,
                                          DrmSystem.CLEARKEY)
    return EncryptionContract(
        content_id=f"bench-live-{scheme}", drm=drm,
        packaging=(Packaging.HLS_TS,) if ts else (Packaging.HLS_FMP4, Packaging.DASH),
        scheme=s, version=SpekeVersion.V2_0,
        video_preset="SHARED" if ts else "PRESET-VIDEO-1",
        audio_preset="SHARED" if ts else "PRESET-AUDIO-1")


def run_scheme(media: LiveMedia, url: str, scheme: str, out: Path, *, rotation: float,
               window: int) -> dict[str, object]:
    """One live run of ``scheme`` over every segment; timings in milliseconds."""
    from speke_packager.constants import Scheme
    from speke_packager.keys import SpekeClient
    from speke_packager.pipeline.live import LivePackager, LiveRendition, SpekeKeySource
    from speke_packager.pipeline.rotation import RotationSchedule

    s = Scheme(scheme)
    ts = s in (Scheme.AES_128, Scheme.SAMPLE_AES)
    names = ["ts"] if ts else ["video", "audio"]
    rends = [LiveRendition(n, None if ts else media.init(n)) for n in names]
    data = {n: [media.segment(n, i) for i in range(media.count)] for n in names}
    source = SpekeKeySource(SpekeClient(url), _contract(scheme))  # type: ignore[arg-type]
    shutil.rmtree(out, ignore_errors=True)
    lat: dict[str, list[float]] = {n: [] for n in names}
    boundary: list[float] = []
    waits: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    schedule = RotationSchedule(interval=rotation)
    with LivePackager(source, schedule, s, out, rends, window=window) as pk:
        # the first period's keys before the clock starts (a live encoder starts with them)
        pk.session.keys_for(0)

        def feed(name: str) -> None:
            try:
                for i, seg in enumerate(data[name]):
                    period = schedule.index(i * SEGMENT)
                    if period and not pk.session.ready(period, 0):
                        # faster than real time: wait (untimed) for the prefetch that a live
                        # feed gives rotation - lead seconds of wall clock
                        w0 = time.perf_counter()
                        pk.session.ready(period, 60)
                        with lock:
                            waits.append((time.perf_counter() - w0) * 1000)
                    t0 = time.perf_counter()
                    res = pk.add_segment(name, seg, start_time=i * SEGMENT, duration=SEGMENT)
                    ms = (time.perf_counter() - t0) * 1000
                    lat[name].append(ms)
                    if res.key_changed and i:
                        with lock:
                            boundary.append(ms)
            except BaseException as exc:  # reported in the result
                errors.append(exc)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=feed, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0 - sum(waits) / 1000 / len(names)
        fetches = pk.fetches
    if errors:
        return {"scheme": scheme, "status": f"error: {errors[0]}"}
    every = [x for v in lat.values() for x in v[1:]]  # the first is warm-up (probe, imports)
    first = [v[0] for v in lat.values()]
    nbytes = sum(len(x) for v in data.values() for x in v)
    return {
        "scheme": scheme, "status": "ok", "renditions": names,
        "segments": sum(len(v) for v in lat.values()), "media_seconds": media.count * SEGMENT,
        "key_periods": media.count * SEGMENT / rotation, "speke_requests": fetches,
        "wall_s": wall, "segments_per_s": sum(len(v) for v in lat.values()) / wall, "mb_per_s": nbytes / wall / 1e6,
        "realtime_x": media.count * SEGMENT / wall,
        "latency_ms": {"p50": statistics.median(every), "p99": _percentile(every, 99),
                       "max": max(every), "first_segment": max(first)},
        "key_change_latency_ms": ({"p50": statistics.median(boundary), "max": max(boundary)}
                                  if boundary else None),
        "outputs": "HLS" if ts else "HLS + DASH",
        "prefetch_waits": {"count": len(waits), "total_ms": sum(waits)},
    }


def measure_live(cache: Path, scratch: Path, *, seconds: int, height: int, rotation: float,
                 window: int, schemes: tuple[str, ...], log: bool) -> dict[str, object]:
    media = make_media(cache, seconds, height, log=log)
    try:
        server = KeyServerProcess.start()
    except (OSError, RuntimeError) as exc:
        return {"status": f"key server did not start: {exc}"}
    results = []
    try:
        for scheme in schemes:
            if log:
                print(f"[bench] live {scheme}: {media.count} segments per rendition", flush=True)
            results.append(run_scheme(media, server.url, scheme, scratch / f"live-{scheme}",
                                      rotation=rotation, window=window))
    finally:
        server.stop()
    return {"status": "ok", "media": {"seconds": seconds, "height": height,
                                      "segment_s": SEGMENT},
            "rotation_s": rotation, "window": window, "writer": "FolderWriter (atomic rename)",
            "schemes": results}


def print_live(doc: dict[str, object]) -> None:
    if doc.get("status") != "ok":
        print(f"live: {doc.get('status')}")
        return
    print(f"\nLive packaging (LivePackager + FolderWriter, {doc['media']}, key rotation every "
          f"{doc['rotation_s']} s, window {doc['window']})")
    print(f"{'scheme':<11}{'outputs':<12}{'segments':>9}{'seg/s':>9}{'x real':>8}"
          f"{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'key chg':>9}{'SPEKE':>7}")
    for r in doc["schemes"]:  # type: ignore[attr-defined]
        if r["status"] != "ok":
            print(f"{r['scheme']:<11}{r['status']}")
            continue
        lat, kc = r["latency_ms"], r["key_change_latency_ms"]
        print(f"{r['scheme']:<11}{r['outputs']:<12}{r['segments']:>9}"
              f"{r['segments_per_s']:>9.1f}{r['realtime_x']:>8.1f}{lat['p50']:>9.1f}"
              f"{lat['p99']:>9.1f}{lat['max']:>9.1f}"
              f"{(kc['max'] if kc else 0):>9.1f}{r['speke_requests']:>7}")
