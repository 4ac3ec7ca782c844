"""The buffer-reusing SAMPLE-AES API (``encrypt_segment_parts``, ``encrypt_file``,
``encrypt_stream``, the encrypt-vod parts transform) gives exactly the bytes of
``encrypt_segment``, which test_reference_pin pins to the frozen reference; and the vectorised
whole-PID H.264 pass (``encrypt_h264_run``) equals the per-PES builder, also where ciphertext
creates new emulation-prevention spots at block edges."""

from __future__ import annotations

import io
import itertools
import os
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from speke_packager.errors import OutputError, TsFormatError, UsageError
from speke_packager.media.ts import SampleAesEncryptor
from speke_packager.media.ts.es_crypto import CbcMessages, encrypt_h264_pes, encrypt_h264_run
from speke_packager.pipeline.contexts import _SampleAesSegment
from speke_packager.pipeline.plan import PartsTransform

from .reference import sample_aes as ref
from .tools import IV, KEY, cut_segments

RECIPES = ("h264-aac-ts", "h264-epb-aac-ts", "h264-ac3-ts")
OTHER_IV = bytes(range(16, 32))


@pytest.fixture(scope="module")
def segments(media, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:  # type: ignore[no-untyped-def]
    return {r: cut_segments(media(r), tmp_path_factory.mktemp(r)) for r in RECIPES}


def _joined(parts: list[bytes | bytearray | memoryview]) -> bytes:
    return b"".join(bytes(p) for p in parts)


@pytest.mark.parametrize("recipe", RECIPES)
def test_parts_equal_encrypt_segment(segments: dict[str, list[Path]], recipe: str) -> None:
    enc = SampleAesEncryptor(KEY, IV)
    for n, path in enumerate(segments[recipe]):
        data = path.read_bytes()
        iv = None if n % 2 else OTHER_IV
        want = enc.encrypt_segment(data, iv=iv)
        assert want == ref.encrypt_sample_aes(data, KEY, iv or IV)
        assert _joined(enc.encrypt_segment_parts(data, iv=iv)) == want
        assert _joined(enc.encrypt_segment_parts(memoryview(data), iv=iv)) == want
        buf = bytearray(data)
        assert _joined(enc.encrypt_segment_parts(buf, iv=iv, in_place=True)) == want
        assert buf != data  # it was edited in place


def test_second_call_does_not_corrupt(segments: dict[str, list[Path]]) -> None:
    enc = SampleAesEncryptor(KEY, IV)
    a, b = (p.read_bytes() for p in segments["h264-epb-aac-ts"][:2])
    first = _joined(enc.encrypt_segment_parts(a))  # copied before the next call, as documented
    second = _joined(enc.encrypt_segment_parts(b))
    again = _joined(enc.encrypt_segment_parts(a))
    assert first == again == enc.encrypt_segment(a)
    assert second == enc.encrypt_segment(b)


def test_in_place_needs_a_writable_buffer(segments: dict[str, list[Path]]) -> None:
    data = segments["h264-aac-ts"][0].read_bytes()
    with pytest.raises(UsageError):
        SampleAesEncryptor(KEY, IV).encrypt_segment_parts(data, in_place=True)


def test_encrypt_file_paths_and_streams(segments: dict[str, list[Path]], tmp_path: Path) -> None:
    enc = SampleAesEncryptor(KEY, IV)
    for n, src in enumerate(segments["h264-epb-aac-ts"]):
        want = enc.encrypt_segment(src.read_bytes(), iv=OTHER_IV if n % 2 else None)
        iv = OTHER_IV if n % 2 else None
        dst = tmp_path / f"out{n}.ts"
        assert enc.encrypt_file(src, dst, iv=iv) == len(want)
        assert dst.read_bytes() == want
        assert enc.encrypt_file(str(src), str(dst), iv=iv) == len(want)  # replaces it
        assert dst.read_bytes() == want
        with src.open("rb") as fi, (tmp_path / "s.ts").open("wb") as fo:
            assert enc.encrypt_file(fi, fo, iv=iv) == len(want)
        assert (tmp_path / "s.ts").read_bytes() == want
        sink = io.BytesIO()
        assert enc.encrypt_stream(io.BytesIO(src.read_bytes()), sink, iv=iv) == len(want)
        assert sink.getvalue() == want
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_encrypt_file_larger_than_the_work_buffer(segments: dict[str, list[Path]]) -> None:
    """A stream of unknown size is read in growing steps and still gives the same bytes."""
    enc = SampleAesEncryptor(KEY, IV)
    data = b"".join(p.read_bytes() for p in segments["h264-aac-ts"][:1]) * 1

    class Trickle(io.RawIOBase):
        def __init__(self, b: bytes) -> None:
            self._b = memoryview(b)

        def readable(self) -> bool:
            return True

        def readinto(self, buf) -> int:  # type: ignore[no-untyped-def,override]
            n = min(len(buf), 7000, len(self._b))
            buf[:n] = self._b[:n]
            self._b = self._b[n:]
            return n

    sink = io.BytesIO()
    enc.encrypt_file(Trickle(data), sink)
    assert sink.getvalue() == enc.encrypt_segment(data)


def test_truncated_input_raises_the_same_error(segments: dict[str, list[Path]],
                                               tmp_path: Path) -> None:
    enc = SampleAesEncryptor(KEY, IV)
    cut = segments["h264-aac-ts"][0].read_bytes()[:-100]
    src = tmp_path / "cut.ts"
    src.write_bytes(cut)
    with pytest.raises(TsFormatError) as seg_err:
        enc.encrypt_segment(cut)
    with pytest.raises(TsFormatError) as parts_err:
        enc.encrypt_segment_parts(cut)
    with pytest.raises(TsFormatError) as file_err:
        enc.encrypt_file(src, tmp_path / "out.ts")
    with pytest.raises(TsFormatError):
        enc.encrypt_file(io.BytesIO(cut), io.BytesIO())
    assert str(seg_err.value) == str(parts_err.value) == str(file_err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.ts"]  # nothing half-written


def test_unwritable_destination_is_an_output_error(segments: dict[str, list[Path]],
                                                   tmp_path: Path) -> None:
    src = segments["h264-aac-ts"][0]
    with pytest.raises(OutputError):
        SampleAesEncryptor(KEY, IV).encrypt_file(src, tmp_path / "missing" / "out.ts")


def test_pipeline_transform_parts(segments: dict[str, list[Path]]) -> None:
    enc = SampleAesEncryptor(KEY, IV)
    t = _SampleAesSegment(enc)
    assert isinstance(t, PartsTransform) and KEY.hex() not in repr(t)
    for path in segments["h264-epb-aac-ts"]:
        data = path.read_bytes()
        want = enc.encrypt_segment(data)
        assert t(data) == want
        assert _joined(list(t.parts(memoryview(bytearray(data))))) == want


# --- encrypt_h264_run against encrypt_h264_pes ---------------------------------------------------

def _ecb_decrypt(block: bytes) -> bytes:
    d = Cipher(algorithms.AES(KEY), modes.ECB()).decryptor()
    return d.update(block) + d.finalize()


def _plaintext_for(cipher_blocks: list[bytes]) -> list[bytes]:
    """CBC plaintext blocks (from IV) that encrypt to ``cipher_blocks``."""
    prev = IV
    out = []
    for c in cipher_blocks:
        out.append(bytes(a ^ b for a, b in zip(_ecb_decrypt(c), prev, strict=True)))
        prev = c
    return out


_EDGE_CIPHER = [bytes(16), b"\x00\x00\x01" + bytes(13), bytes(15) + b"\x01",
                b"\x01" + bytes(15), b"\x03" + os.urandom(14) + b"\x00",
                b"\x00" + os.urandom(15), os.urandom(14) + b"\x00\x00"]


def _slice_nal(rng: np.random.Generator, size: int, forced: list[int], clear_edges: int
               ) -> bytes:
    """A type-5 NAL of ``size`` bytes whose k-th encrypted block encrypts to a chosen block
    for k in ``forced`` (zero bytes at its edges), with zero bytes put next to some blocks."""
    nal = bytearray(rng.integers(1, 256, size, dtype=np.uint8).tobytes())
    nal[0] = 0x65
    nb = 0 if size <= 48 else (size - 48 + 159) // 160
    wanted = [os.urandom(16) for _ in range(nb)]
    for k in forced:
        if k < nb:
            wanted[k] = _EDGE_CIPHER[k % len(_EDGE_CIPHER)]
    for k, p in enumerate(_plaintext_for(wanted)):
        nal[32 + 160 * k : 48 + 160 * k] = p
    for k in range(min(nb, clear_edges)):
        b = 32 + 160 * k
        nal[b - 2 : b] = b"\x00\x00"  # clear zeros before a block
        if b + 18 <= size - 1:
            nal[b + 16 : b + 18] = (b"\x00\x02", b"\x00\x03")[k % 2]  # ... and after one
    for k in range(1, 3):  # existing EPBs in clear parts
        at = 32 + 160 * k + 60
        if at + 3 < size - 1:
            nal[at : at + 3] = b"\x00\x00\x03"
    nal[-1] = nal[-1] or 1
    assert len(nal) == size
    return bytes(nal)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 900), st.lists(st.integers(0, 6), max_size=4),
                          st.integers(0, 3), st.sampled_from([1, 5, 6, 9]),
                          st.sampled_from([b"", b"\x00", b"\x00\x00"])),
                min_size=1, max_size=4),
       st.integers(0, 2**32 - 1))
def test_run_equals_per_pes_builder(pes_specs: list[tuple[int, list[int], int, int, bytes]],
                                    seed: int) -> None:
    _check_run(pes_specs, seed)


def test_run_with_new_spots_at_every_block_edge() -> None:
    cuts = _check_run([(900, [0, 1, 2, 3, 4], 3, 1, b""), (700, [5, 6, 0], 0, 9, b"\x00"),
                       (30, [], 0, 5, b""), (500, [1, 2, 3], 2, 6, b"\x00\x00")], 7)
    assert len(cuts) >= 8  # ciphertext zeros at block edges made new escape spots


def _check_run(pes_specs: list[tuple[int, list[int], int, int, bytes]], seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    head = bytes.fromhex("000001e0000080800521000100ff")
    pes_list = []
    for size, forced, edges, other_type, tail in pes_specs:
        es = (b"\x00\x00\x00\x01\x09\xf0" + b"\x00\x00\x01" + bytes((0x60 | other_type,))
              + os.urandom(40) + b"\x00\x00\x01" + _slice_nal(rng, size + 1, forced, edges)
              + tail)
        pes_list.append(head + es)
    buf = bytearray(b"".join(pes_list) + bytes(64))
    ranges, pos = [], 0
    for p in pes_list:
        ranges.append((pos + len(head), pos + len(p)))
        pos += len(p)
    cuts, touched = encrypt_h264_run(buf, np.array(ranges, dtype=np.intp),
                                           CbcMessages(KEY, IV, encrypt=True))
    cut_list = cuts.tolist()
    pos = 0
    for k, p in enumerate(pes_list):
        want = encrypt_h264_pes(p[len(head):], head, CbcMessages(KEY, IV, encrypt=True))
        mine = [c - pos for c in cut_list if pos <= c < pos + len(p)]
        edges = [0, *mine, len(p)]
        got = b"\x03".join(bytes(buf[pos + a : pos + b]) for a, b in itertools.pairwise(edges))
        if want is None:
            assert k not in touched.tolist() and got == p
        else:
            assert k in touched.tolist() and got == bytes(want)
        pos += len(p)
    return cut_list


@pytest.mark.parametrize("encrypt", [True, False])
def test_crypt_all_equals_crypt_per_message(encrypt: bool) -> None:
    sizes = [16 * n for n in (3, 1, 7, 2, 40)]
    starts = list(itertools.accumulate([5, *sizes[:-1]], lambda a, b: a + b + 3))
    data = bytearray(os.urandom(starts[-1] + sizes[-1] + 16))
    one, many = bytearray(data), bytearray(data)
    cbc = CbcMessages(KEY, IV, encrypt=encrypt)
    src = bytearray(data)
    with memoryview(src) as sv, memoryview(one) as mv:
        for s, n in zip(starts, sizes, strict=True):
            cbc.crypt(sv, mv, s, n)
    cbc2 = CbcMessages(KEY, IV, encrypt=encrypt)
    src = bytearray(data)
    with memoryview(src) as sv, memoryview(many) as mv:
        cbc2.crypt_all(sv, mv, starts[:2], sizes[:2])
        cbc2.crypt_all(sv, mv, starts[2:], sizes[2:])  # the chain state carries over
    assert one == many != data
