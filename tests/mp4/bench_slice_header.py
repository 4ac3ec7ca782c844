"""Per-slice cost of the cbcs slice-header parsers and of ``MapSession.map`` (not a test).

    .venv/bin/python -m tests.mp4.bench_slice_header [--repeat N] [--hash] [--reference] [DIR ...]

Each DIR is a CMAF track directory (``init.mp4`` + ``seg_*.m4s``) or an fMP4 file; default: the
5-minute benchmark asset's video. Prints per-slice µs of ``slice_header_size`` and per-sample µs
of ``MapSession.map`` (CPU time of this process, less disturbed by other load than wall time;
medians over the repeats, the first, cold, pass shown separately), and with ``--hash`` a
SHA-256 over every slice-header size and every cbcs/cenc subsample map. With ``--reference``
the frozen first implementation (tests/mp4/reference_slice) is timed too, in turns
with the current one, so that both see the same load.
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
from tests.mp4.reference_slice import h264 as ref_h264
from tests.mp4.reference_slice import hevc as ref_hevc
from tests.mp4.reference_slice import subsamples as ref_subsamples

DEFAULT = (Path(__file__).resolve().parents[2] / "benchmarks" / ".cache"
           / "1080p25-5min-5500k-superfast-v1" / "cmaf" / "video")


def load(src: Path) -> tuple[SubsampleMapper, SubsampleMapper, list[memoryview]]:
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
    samples: list[memoryview] = []
    for chunk in chunks:
        mv = memoryview(chunk)  # as the encryptor passes samples
        for box in iter_boxes(chunk):
            if box.type != b"moof":
                continue
            _, trafs = parse_moof(chunk, box, defaults)
            for traf in trafs:
                if traf.track_id == track.track_id:
                    for off, size in zip(traf.offsets, traf.sizes, strict=True):
                        samples.append(mv[box.start + off:box.start + off + size])
    return track.mapper(Scheme.CBCS), track.mapper(Scheme.CENC), samples


def vcl_nals(m: SubsampleMapper,
             samples: list[memoryview]) -> list[tuple[memoryview, list[memoryview]]]:
    """Per sample: (the sample, its NAL units without length fields)."""
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


def timings(shs: object, ps: object, slices: list[memoryview], mapper: object,
            samples: list[memoryview]) -> tuple[float, float]:
    """(µs per slice, µs per sample) of one pass."""
    f = shs
    t0 = time.process_time()
    for nal in slices:
        f(nal, ps)  # type: ignore[operator]
    t1 = time.process_time()
    sess = mapper.session()  # type: ignore[attr-defined]
    t2 = time.process_time()
    for s in samples:
        sess.map(s)
    t3 = time.process_time()
    return (t1 - t0) / len(slices) * 1e6, (t3 - t2) / len(samples) * 1e6


def show(label: str, runs: list[tuple[float, float]]) -> None:
    sl = [a for a, _ in runs]
    sa = [b for _, b in runs]
    print(f"  {label:9} slice_header_size µs/slice: first {sl[0]:.2f} "
          f"median {statistics.median(sl):.2f} min {min(sl):.2f} | "
          f"map µs/sample: first {sa[0]:.2f} median {statistics.median(sa):.2f} min {min(sa):.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("src", nargs="*", type=Path)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--hash", action="store_true")
    ap.add_argument("--reference", action="store_true")
    a = ap.parse_args(argv)
    for src in a.src or [DEFAULT]:
        cbcs, cenc, samples = load(src)
        is_hevc = cbcs.family is CodecFamily.HEVC
        mod = hevc if is_hevc else h264
        ps = (hevc.HevcParamSets() if is_hevc else h264.H264ParamSets())
        for n in cbcs.param_nals:
            ps.add(n)
        pairs = vcl_nals(cbcs, samples)
        slices: list[memoryview] = []
        in_band: list[memoryview] = []
        for _, nals in pairs:
            for nal in nals:
                if is_hevc:
                    t = (nal[0] >> 1) & 0x3F
                    if t in (33, 34):
                        ps.add(nal)
                        in_band.append(nal)
                    if t < 32:
                        slices.append(nal)
                else:
                    t = nal[0] & 0x1F
                    if t in (7, 8):
                        ps.add(nal)
                        in_band.append(nal)
                    if t in (1, 5):
                        slices.append(nal)
        shs = mod.slice_header_size  # type: ignore[attr-defined]
        ref_mod = ref_hevc if is_hevc else ref_h264
        ref_ps = ref_mod.HevcParamSets() if is_hevc else ref_mod.H264ParamSets()
        for n in cbcs.param_nals:
            ref_ps.add(n)
        for nal in in_band:
            ref_ps.add(nal)
        ref_mapper = ref_subsamples.SubsampleMapper(
            ref_subsamples.CodecFamily(cbcs.family.value), cbcs.scheme, cbcs.nal_length_size,
            cbcs.param_nals)
        cur: list[tuple[float, float]] = []
        ref: list[tuple[float, float]] = []
        for _ in range(a.repeat):
            cur.append(timings(shs, ps, slices, cbcs, samples))
            if a.reference:
                ref.append(timings(ref_mod.slice_header_size, ref_ps, slices, ref_mapper,
                                   samples))
        print(f"{src}: {len(samples)} samples, {len(slices)} slices")
        show("current", cur)
        if ref:
            show("reference", ref)
            ratio = [statistics.median(r[i] for r in ref) / statistics.median(c[i] for c in cur)
                     for i in (0, 1)]
            print(f"  speed-up (medians): slice headers {ratio[0]:.2f}x, map {ratio[1]:.2f}x")
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
