"""Per-slice cost of the cbcs slice-header parsers and of ``MapSession.map`` (not a test).

    .venv/bin/python -m tests.mp4.bench_slice_header [--repeat N] [--hash] [DIR ...]

Each DIR is a CMAF track directory (``init.mp4`` + ``seg_*.m4s``) or an fMP4 file; default: the
5-minute benchmark asset's video. Prints per-slice µs of ``slice_header_size`` and per-sample µs
of ``MapSession.map`` (medians over the repeats; the first, cold, pass is shown separately), and
with ``--hash`` a SHA-256 over every slice-header size and every cbcs/cenc subsample map.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import struct
import sys
import time
from pathlib import Path

from speke_packager.constants import Scheme
from speke_packager.media.codecs import h264, hevc
from speke_packager.media.mp4.boxes import iter_boxes
from speke_packager.media.mp4.fragment import parse_moof
from speke_packager.media.mp4.init import parse_init
from speke_packager.media.subsamples import CodecFamily, SubsampleMapper

DEFAULT = (Path(__file__).resolve().parents[2] / "benchmarks" / ".cache"
           / "1080p25-5min-5500k-superfast-v1" / "cmaf" / "video")


def load(src: Path) -> tuple[SubsampleMapper, SubsampleMapper, list[bytes]]:
    """(cbcs mapper, cenc mapper, samples) of the first video track of ``src``."""
    if src.is_dir():
        init = (src / "init.mp4").read_bytes()
        chunks = [p.read_bytes() for p in sorted(src.glob("seg_*.m4s"))]
    else:
        data = src.read_bytes()
        init, chunks = data, [data]
    setup = parse_init(init)
    track = next(t for t in setup.tracks.values() if t.config)
    defaults = {t.track_id: t.default_sample_size for t in setup.tracks.values()}
    samples: list[bytes] = []
    for chunk in chunks:
        for box in iter_boxes(chunk):
            if box.type != b"moof":
                continue
            _, trafs = parse_moof(chunk, box, defaults)
            for traf in trafs:
                if traf.track_id == track.track_id:
                    for off, size in zip(traf.offsets, traf.sizes, strict=True):
                        samples.append(chunk[box.start + off:box.start + off + size])
    return track.mapper(Scheme.CBCS), track.mapper(Scheme.CENC), samples


def vcl_nals(m: SubsampleMapper, samples: list[bytes]) -> list[tuple[bytes, list[bytes]]]:
    """Per sample: (the sample, its non-VCL-free list of VCL NAL units)."""
    ls = m.nal_length_size
    fmt = {1: ">B", 2: ">H", 4: ">I"}[ls]
    out = []
    for s in samples:
        pos, nals = 0, []
        while pos < len(s):
            (n,) = struct.unpack_from(fmt, s, pos)
            nals.append(s[pos + ls:pos + ls + n])
            pos += ls + n
        out.append((s, nals))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("src", nargs="*", type=Path)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--hash", action="store_true")
    a = ap.parse_args(argv)
    for src in a.src or [DEFAULT]:
        cbcs, cenc, samples = load(src)
        is_hevc = cbcs.family is CodecFamily.HEVC
        mod = hevc if is_hevc else h264
        ps = (hevc.HevcParamSets() if is_hevc else h264.H264ParamSets())
        for n in cbcs.param_nals:
            ps.add(n)
        pairs = vcl_nals(cbcs, samples)
        slices: list[bytes] = []
        for _, nals in pairs:
            for nal in nals:
                if is_hevc:
                    t = (nal[0] >> 1) & 0x3F
                    if t in (33, 34):
                        ps.add(nal)
                    if t < 32:
                        slices.append(nal)
                else:
                    t = nal[0] & 0x1F
                    if t in (7, 8):
                        ps.add(nal)
                    if t in (1, 5):
                        slices.append(nal)
        shs = mod.slice_header_size  # type: ignore[attr-defined]
        per_slice: list[float] = []
        per_sample: list[float] = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            for nal in slices:
                shs(nal, ps)
            per_slice.append((time.perf_counter() - t0) / len(slices) * 1e6)
            sess = cbcs.session()
            t0 = time.perf_counter()
            for s in samples:
                sess.map(s)
            per_sample.append((time.perf_counter() - t0) / len(samples) * 1e6)
        print(f"{src}: {len(samples)} samples, {len(slices)} slices")
        print(f"  slice_header_size µs/slice: first {per_slice[0]:.2f} "
              f"median {statistics.median(per_slice):.2f} min {min(per_slice):.2f}")
        print(f"  cbcs map µs/sample:        first {per_sample[0]:.2f} "
              f"median {statistics.median(per_sample):.2f} min {min(per_sample):.2f}")
        if a.hash:
            h = hashlib.sha256()
            h.update(repr([shs(nal, ps) for nal in slices]).encode())
            for m in (cbcs, cenc):
                sess = m.session()
                for s in samples:
                    h.update(repr(sess.map(s)).encode())
            print(f"  hash {h.hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
