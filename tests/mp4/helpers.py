"""Helpers for the fMP4 tests: split files, run the independent tools, read senc tables."""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from fixtures.media import framemd5, packager_key_flags
from speke_packager._tools import PACKAGER, find_tool
from speke_packager.media.mp4.boxes import iter_boxes, parse_tree
from speke_packager.media.mp4.fragment import parse_moof
from speke_packager.media.mp4.init import parse_init

KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
KID = UUID("10000000-2000-3000-4000-500000000000")
KEY2 = bytes.fromhex("f0e0d0c0b0a090807060504030201000")
KID2 = UUID("20000000-3000-4000-5000-600000000000")
WRONG = bytes.fromhex("ffeeddccbbaa99887766554433221100")


def split(data: bytes) -> tuple[bytes, list[bytes]]:
    """(init = everything up to moov's end, [moof+mdat, ...]) of a fragmented file."""
    boxes = list(iter_boxes(data))
    moov = next(b for b in boxes if b.type == b"moov")
    segs: list[bytes] = []
    start = None
    for b in boxes:
        if b.type == b"moof":
            start = b.start
        elif b.type == b"mdat" and start is not None:
            segs.append(data[start:b.end])
            start = None
    return data[:moov.end], segs


def frames(path: Path, stream: str, key: bytes | None = None,
           keys: dict[UUID, bytes] | None = None) -> list[str]:
    """Decoded-frame MD5s; [] when FFmpeg cannot decode at all (wrong key)."""
    try:
        return framemd5(path, stream, keys=keys or key)
    except RuntimeError:
        return []


def shaka(*args: str) -> None:
    packager = find_tool("packager", PACKAGER)
    assert packager
    res = subprocess.run([packager, *args], capture_output=True, check=False)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]


def shaka_decrypt(src: Path, dst: Path, stream: str, keys: dict[UUID, bytes]) -> None:
    spec = ",".join(f"label=k{i}:key_id={k.hex}:key={v.hex()}"
                    for i, (k, v) in enumerate(keys.items()))
    shaka(f"in={src},stream={stream},output={dst}", "--enable_raw_key_decryption",
          packager_key_flags(f"--keys={spec}"))


@dataclass
class Sample:
    data: bytes
    iv: bytes
    subsamples: list[tuple[int, int]] | None


def senc_samples(data: bytes, track_id: int, iv_size: int) -> list[Sample]:
    """Every sample of ``track_id`` with its senc IV and subsamples, in file order."""
    init = parse_init(data)
    defaults = {t.track_id: t.default_sample_size for t in init.tracks.values()}
    out: list[Sample] = []
    for box in iter_boxes(data):
        if box.type != b"moof":
            continue
        _, trafs = parse_moof(data, box, defaults)
        for traf in trafs:
            if traf.track_id != track_id:
                continue
            senc = traf.node.find(b"senc")
            ivs: list[bytes] = [b""] * traf.sample_count
            subs: list[list[tuple[int, int]] | None] = [None] * traf.sample_count
            if senc is not None:
                p = senc.payload
                flags = int.from_bytes(p[1:4], "big")
                pos = 8
                for i in range(struct.unpack_from(">I", p, 4)[0]):
                    ivs[i] = p[pos:pos + iv_size]
                    pos += iv_size
                    if flags & 2:
                        (n,) = struct.unpack_from(">H", p, pos)
                        pos += 2
                        subs[i] = [struct.unpack_from(">HI", p, pos + 6 * j) for j in range(n)]
                        pos += 6 * n
            for i, (off, size) in enumerate(zip(traf.offsets, traf.sizes, strict=True)):
                a = box.start + off
                out.append(Sample(data[a:a + size], ivs[i], subs[i]))
    return out


def child_types(data: bytes, path: list[bytes]) -> list[bytes]:
    """Types of the children of the first box at ``path`` (e.g. [moov, trak, mdia])."""
    for box in iter_boxes(data):
        if box.type == path[0]:
            node = parse_tree(data, box)
            for t in path[1:]:
                nxt = node.find(t)
                assert nxt is not None, t
                node = nxt
            return [c.type for c in node.children or []]
    raise AssertionError(path)
