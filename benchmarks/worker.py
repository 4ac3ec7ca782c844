"""One benchmark case of our segment API, run in a fresh interpreter so its peak RSS is its own.

``python -m benchmarks.worker SPEC.json`` reads the case (scheme, mode, jobs, paths, the 0600 key
file), encrypts every segment of the clear asset (read file, encrypt, write file), and prints one
JSON line: seconds of the encryption loop (interpreter start-up and imports excluded), bytes in
and out, and the peak RSS of itself and of its pool workers. If the encryptor for the scheme has
not landed yet it prints ``{"unavailable": "..."}``.

The adapters below are the only place that knows the encryptors' call signatures.
"""

from __future__ import annotations

import cProfile
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .assets import AssetSet, AssetSpec, _load
from .keys import BenchKeys

SegmentFn = Callable[[Path, Path, int], int]  # (src, dst, segment_index) -> bytes written
MemoryFn = Callable[[bytes, int], bytes]  # (clear segment, segment_index) -> encrypted segment


@dataclass(frozen=True)
class Item:
    """One segment to encrypt."""

    stream: str  # "video" | "audio" | "ts"
    index: int
    src: Path
    dst: Path


# --- adapters (one per scheme family) -----------------------------------------------------------

def _mp4_stream(scheme: str, init: bytes, keys: BenchKeys, kind: str
                ) -> tuple[bytes, SegmentFn, MemoryFn]:
    from speke_packager.constants import Scheme
    from speke_packager.media.mp4 import Mp4Encryptor, probe_init

    key = keys.video if kind == "video" else keys.audio
    info = probe_init(init)
    track_ids = _track_ids(info)
    sch = Scheme(scheme)
    if sch is Scheme.CBCS:
        enc = Mp4Encryptor(init, sch, dict.fromkeys(track_ids, key), iv_size=0,
                           constant_iv=keys.cbcs_iv)
    else:
        enc = Mp4Encryptor(init, sch, dict.fromkeys(track_ids, key), iv_seed=keys.cenc_iv,
                           iv_size=8)

    def mem(data: bytes, index: int) -> bytes:
        return enc.encrypt_segment(data, segment_index=index)

    def run(src: Path, dst: Path, index: int) -> int:
        # the segment API's file entry point: reused read buffer, in place, one writev
        return enc.encrypt_segment_file(src, dst, segment_index=index)

    return enc.encrypted_init(), run, mem


def _track_ids(info: object) -> list[int]:
    """Track ids from whatever :func:`probe_init` returns (a sequence of tracks or a mapping)."""
    tracks = getattr(info, "tracks", info)
    if isinstance(tracks, dict):
        return [int(k) for k in tracks]
    ids = [int(getattr(t, "track_id", 0)) for t in tracks]  # type: ignore[attr-defined]
    return [i for i in ids if i] or [1]


def _sample_aes_stream(keys: BenchKeys) -> tuple[SegmentFn, MemoryFn]:
    from speke_packager.media.ts import SampleAesEncryptor

    enc = SampleAesEncryptor(keys.ts.key, keys.ts_iv)

    def mem(data: bytes, index: int) -> bytes:
        return enc.encrypt_segment(data)

    def run(src: Path, dst: Path, index: int) -> int:
        return enc.encrypt_file(src, dst)  # reused read buffer, in place, one writev

    return run, mem


def _aes128_stream(keys: BenchKeys) -> tuple[SegmentFn, MemoryFn]:
    from speke_packager.media.aes128 import encrypt_aes128, encrypt_aes128_file, iv_from_sequence

    key = keys.ts.key

    def mem(data: bytes, index: int) -> bytes:
        return encrypt_aes128(data, key, iv_from_sequence(index))

    def run(src: Path, dst: Path, index: int) -> int:
        with src.open("rb", buffering=0) as fi, dst.open("wb") as fo:
            return encrypt_aes128_file(fi, fo, key, iv_from_sequence(index))

    return run, mem


def _copy_stream() -> SegmentFn:
    """The I/O floor of the file-to-file cases: the same reads and writes, no encryption
    (readinto a reused buffer, one write per file)."""
    buf = bytearray(16 << 20)

    def run(src: Path, dst: Path, index: int) -> int:
        with src.open("rb", buffering=0) as fi:
            n = fi.readinto(buf)
            if n == len(buf):
                raise RuntimeError(f"{src} is larger than the copy buffer")
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            return os.write(fd, memoryview(buf)[:n])
        finally:
            os.close(fd)

    return run


# --- per-process state --------------------------------------------------------------------------

_STREAMS: dict[str, SegmentFn] = {}
_MEMORY: dict[str, MemoryFn] = {}


def _setup(spec: dict[str, object], *, write_inits: bool) -> list[Item]:
    """Build the encryptors of this process; returns the work items (and writes inits)."""
    asset = _asset(spec)
    keys = BenchKeys.load(Path(str(spec["keys"])))
    scheme = str(spec["scheme"])
    out = Path(str(spec["out"]))
    items: list[Item] = []
    limit = spec.get("limit_segments")
    copy = bool(spec.get("copy"))
    if scheme in ("cenc", "cbcs"):
        for track in asset.cmaf:
            init, fn, mem = _mp4_stream(scheme, track.init.read_bytes(), keys, track.kind)
            _STREAMS[track.kind], _MEMORY[track.kind] = (_copy_stream() if copy else fn), mem
            d = out / track.kind
            if write_inits:
                d.mkdir(parents=True, exist_ok=True)
                (d / "init.mp4").write_bytes(init)
            segs = track.segments[: int(str(limit))] if limit else track.segments
            items += [Item(track.kind, i, p, d / p.name) for i, p in enumerate(segs)]
    else:
        _STREAMS["ts"], _MEMORY["ts"] = (_sample_aes_stream(keys) if scheme == "sample-aes"
                                         else _aes128_stream(keys))
        if copy:
            _STREAMS["ts"] = _copy_stream()
        if write_inits:
            out.mkdir(parents=True, exist_ok=True)
        segs = asset.ts_segments[: int(str(limit))] if limit else asset.ts_segments
        items += [Item("ts", i, p, out / p.name) for i, p in enumerate(segs)]
    return items


def _asset(spec: dict[str, object]) -> AssetSet:
    return _load(AssetSpec(**spec["asset_spec"]), Path(str(spec["asset_root"])))  # type: ignore[arg-type]


def _pool_init(spec: dict[str, object]) -> None:
    _setup(spec, write_inits=False)


def _do(item: Item) -> tuple[int, int]:
    return item.src.stat().st_size, _STREAMS[item.stream](item.src, item.dst, item.index)


def _do_memory(item: Item) -> tuple[int, int, float]:
    """Read the segment (not timed), encrypt it in memory (timed), drop the result."""
    data = item.src.read_bytes()
    t0 = time.perf_counter()
    out = _MEMORY[item.stream](data, item.index)
    return len(data), len(out), time.perf_counter() - t0


def run_case(spec: dict[str, object]) -> dict[str, object]:
    """Encrypt the asset as ``spec`` says; returns the measurement."""
    jobs = int(str(spec.get("jobs", 1)))
    items = _setup(spec, write_inits=True)
    t0 = time.perf_counter()
    if spec.get("memory"):
        timed = [_do_memory(it) for it in items]
        results = [(a, b) for a, b, _ in timed]
        t0 = time.perf_counter() - sum(t for *_, t in timed)  # seconds = encryption only
    elif jobs <= 1:
        results = [_do(it) for it in items]
    else:
        # big segments first, so the last task does not run alone on one core
        order = sorted(items, key=lambda it: -it.src.stat().st_size)
        with ProcessPoolExecutor(max_workers=jobs, initializer=_pool_init,
                                 initargs=(spec,)) as ex:
            results = list(ex.map(_do, order, chunksize=1))
    seconds = time.perf_counter() - t0
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "seconds": seconds,
        "bytes_in": sum(r[0] for r in results),
        "bytes_out": sum(r[1] for r in results),
        "segments": len(items),
        "self_maxrss_kb": self_kb,
        "pool_worker_maxrss_kb": child_kb if jobs > 1 else 0,
        "total_rss_estimate_kb": self_kb + (jobs * child_kb if jobs > 1 else 0),
    }


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        if spec.get("profile"):
            _setup(spec, write_inits=True)  # imports and encryptor set-up stay out of the profile
            prof = cProfile.Profile()
            result = prof.runcall(run_case, spec)
            prof.dump_stats(str(spec["profile"]))
        else:
            result = run_case(spec)
    except ImportError as exc:
        print(json.dumps({"unavailable": f"not available yet ({exc})"}))
        return 0
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main(sys.argv[1:]))
