"""Mp4Encryptor.encrypt_segment_file: reused read buffer, in-place encryption, writev output.

It must write exactly what encrypt_segment returns, for paths and for streams, call after call
with segments of different sizes (the per-thread buffer is reused and grows), and on bad input
raise encrypt_segment's typed error without leaving any output behind."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from speke_packager._io import ThreadScratch
from speke_packager.constants import Scheme
from speke_packager.errors import MediaError, Mp4FormatError, OutputError
from speke_packager.media.mp4 import Mp4Encryptor, probe_init
from speke_packager.model import ContentKey
from tests.mp4.conftest import Asset
from tests.mp4.helpers import KEY, KID


def _enc(a: Asset, scheme: Scheme, **kw: object) -> Mp4Encryptor:
    keys = {t.track_id: ContentKey(KID, KEY) for t in probe_init(a.init)}
    return Mp4Encryptor(a.init, scheme, keys, iv_seed=b"file", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", [Scheme.CBCS, Scheme.CENC])
@pytest.mark.parametrize("name", ["h264-aac-fmp4", "hevc-fmp4"])
def test_paths_equal_encrypt_segment(asset: Callable[[str], Asset], tmp_path: Path,
                                     scheme: Scheme, name: str) -> None:
    a = asset(name)
    enc = _enc(a, scheme)
    # big, small, big again: the reused buffer shrinks its use and grows back
    order = sorted(range(len(a.segments)), key=lambda i: -len(a.segments[i]))
    order = order[:2] + order[::-1]
    for i in order:
        src = tmp_path / f"in{i}.m4s"
        src.write_bytes(a.segments[i])
        dst = tmp_path / "out" / f"seg{i}.m4s"
        dst.parent.mkdir(exist_ok=True)
        n = enc.encrypt_segment_file(src, dst, segment_index=i)
        want = enc.encrypt_segment(a.segments[i], segment_index=i)
        assert dst.read_bytes() == want
        assert n == len(want)
        assert src.read_bytes() == a.segments[i]  # the input file is left alone
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"seg{i}.m4s" for i in set(order))  # no temporary files left


def test_streams_equal_encrypt_segment(asset: Callable[[str], Asset], tmp_path: Path) -> None:
    """Streams in and out: BytesIO (writelines) and buffered files (writev on the fd, with
    bytes already buffered before and written after the segment)."""
    a = asset("h264-aac-fmp4")
    enc = _enc(a, Scheme.CBCS)
    wants = [enc.encrypt_segment(s, segment_index=i) for i, s in enumerate(a.segments)]
    sink = io.BytesIO()
    for i, seg in enumerate(a.segments):
        assert enc.encrypt_segment_file(io.BytesIO(seg), sink, segment_index=i) == len(wants[i])
    assert sink.getvalue() == b"".join(wants)
    joined = tmp_path / "all.m4s"
    with open(tmp_path / "in.m4s", "wb") as fh:
        fh.write(b"".join(a.segments))
    with open(tmp_path / "in.m4s", "rb") as src, open(joined, "wb") as out:
        out.write(b"head")  # still in the writer's buffer when the segment is written
        for i, seg in enumerate(a.segments):
            # a stream positioned at a segment, read to EOF: only the last segment fits
            if i < len(a.segments) - 1:
                enc.encrypt_segment_file(io.BytesIO(seg), out, segment_index=i)
            else:
                src.seek(sum(map(len, a.segments[:-1])))
                enc.encrypt_segment_file(src, out, segment_index=i)
        assert out.tell() == 4 + sum(map(len, wants))
        out.write(b"tail")
    assert joined.read_bytes() == b"head" + b"".join(wants) + b"tail"


def test_pipe_input_and_clear_lead(asset: Callable[[str], Asset], tmp_path: Path) -> None:
    a = asset("h264-aac-fmp4")
    enc = _enc(a, Scheme.CBCS, clear_lead=True)
    seg = a.segments[0]
    r, w = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(w, seg), os.close(w)))
    writer.start()
    with os.fdopen(r, "rb", buffering=0) as src:  # no size known in advance
        enc.encrypt_segment_file(src, tmp_path / "a.m4s", segment_index=0, clear=True)
    writer.join()
    assert (tmp_path / "a.m4s").read_bytes() == enc.encrypt_segment(seg, segment_index=0,
                                                                    clear=True)


def test_truncated_input_raises_and_writes_nothing(asset: Callable[[str], Asset],
                                                   tmp_path: Path) -> None:
    a = asset("h264-aac-fmp4")
    enc = _enc(a, Scheme.CBCS)
    seg = a.segments[1]
    cut = seg[:len(seg) - 100]
    with pytest.raises(Mp4FormatError) as want:
        enc.encrypt_segment(cut, segment_index=1)
    src = tmp_path / "cut.m4s"
    src.write_bytes(cut)
    dst = tmp_path / "out.m4s"
    with pytest.raises(Mp4FormatError) as got:
        enc.encrypt_segment_file(src, dst, segment_index=1)
    assert str(got.value) == str(want.value)
    assert list(tmp_path.iterdir()) == [src]
    dst.write_bytes(b"earlier output")  # an existing file is not touched either
    with pytest.raises(Mp4FormatError):
        enc.encrypt_segment_file(src, dst, segment_index=1)
    assert dst.read_bytes() == b"earlier output"
    sink = io.BytesIO()
    with pytest.raises(Mp4FormatError):
        enc.encrypt_segment_file(io.BytesIO(cut), sink, segment_index=1)
    assert sink.getvalue() == b""
    # a good call after the failures still gives the right bytes
    assert enc.encrypt_segment_file(io.BytesIO(seg), sink, segment_index=1) == len(
        sink.getvalue())
    assert sink.getvalue() == enc.encrypt_segment(seg, segment_index=1)


def test_io_errors_are_typed(asset: Callable[[str], Asset], tmp_path: Path) -> None:
    a = asset("h264-aac-fmp4")
    enc = _enc(a, Scheme.CBCS)
    with pytest.raises(MediaError, match="cannot read"):
        enc.encrypt_segment_file(tmp_path / "missing.m4s", tmp_path / "x.m4s", segment_index=0)
    src = tmp_path / "in.m4s"
    src.write_bytes(a.segments[0])
    with pytest.raises(OutputError, match="cannot write"):
        enc.encrypt_segment_file(src, tmp_path / "no" / "such" / "x.m4s", segment_index=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.m4s"]


def test_threads_use_their_own_buffers(asset: Callable[[str], Asset], tmp_path: Path) -> None:
    a = asset("h264-aac-fmp4")
    enc = _enc(a, Scheme.CENC)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for r in range(3):
                for i, seg in enumerate(a.segments):
                    sink = io.BytesIO()
                    enc.encrypt_segment_file(io.BytesIO(seg), sink, segment_index=i)
                    assert sink.getvalue() == enc.encrypt_segment(seg, segment_index=i), (t, r)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors


class _Exact(ThreadScratch):
    """A scratch buffer of exactly the size asked for (no 1 MiB minimum): growth shows."""

    def get(self, size: int) -> bytearray:
        if len(self.buf) < size:
            self.buf = bytearray(size)
        return self.buf


def test_buffer_grows_when_the_size_is_unknown(asset: Callable[[str], Asset],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream with no size hint is read into a buffer that doubles as needed; contents read
    before each growth survive it."""
    from speke_packager.media.mp4 import encryptor

    monkeypatch.setattr(encryptor, "_WORK", _Exact())
    a = asset("h264-aac-fmp4")
    enc = _enc(a, Scheme.CBCS)
    for i in (0, 1, 0):
        sink = io.BytesIO()
        enc.encrypt_segment_file(io.BufferedReader(io.BytesIO(a.segments[i]), 1000), sink,
                                 segment_index=i)
        assert sink.getvalue() == enc.encrypt_segment(a.segments[i], segment_index=i)


def test_encrypt_segment_copies_its_input(asset: Callable[[str], Asset]) -> None:
    """encrypt_segment works in place in the thread's buffer, never in the caller's: any buffer
    type gives the same bytes and stays unchanged, and results of earlier calls are not views
    of the reused buffer."""
    a = asset("h264-aac-fmp4")
    enc = _enc(a, Scheme.CBCS)
    seg = a.segments[2]
    want = enc.encrypt_segment(seg, segment_index=2)
    assert isinstance(want, bytes)
    mine = bytearray(seg)
    for data in (mine, memoryview(mine), memoryview(mine).cast("c"), memoryview(seg)):
        assert enc.encrypt_segment(data, segment_index=2) == want
    assert mine == seg
    other = enc.encrypt_segment(a.segments[0], segment_index=0)
    assert want == enc.encrypt_segment(seg, segment_index=2)
    assert other == enc.encrypt_segment(a.segments[0], segment_index=0)
