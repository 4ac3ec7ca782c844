"""Encrypt a whole fragmented MP4 file box by box (DASH SegmentBase / single-file inputs).

Memory is bounded by the largest moof+mdat pair. ``sidx`` boxes are written as placeholders
and patched at the end (in ``dst`` when it is seekable, else in a spooled temporary file that
holds everything from the first sidx on).
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import tempfile
from typing import IO, BinaryIO, Protocol

from ...errors import Mp4FormatError, UsageError
from .boxes import iter_boxes
from .segment import patch_mfra
from .sidx import patch_sidx

__all__ = ["FragmentEncryptor", "encrypt_stream"]


class FragmentEncryptor(Protocol):
    """What :func:`encrypt_stream` needs of an encryptor (:class:`.encryptor.Mp4Encryptor`)."""

    @property
    def moov_digest(self) -> bytes:
        """SHA-256 of the clear moov box the encryptor was made with."""
        ...

    def encrypted_init(self) -> bytes:
        """The protected init segment (its moov replaces the file's)."""
        ...

    def encrypt_segment_parts(self, data: bytes | bytearray | memoryview, *,
                              segment_index: int, clear: bool = False, in_place: bool = False
                              ) -> list[bytes | bytearray | memoryview]:
        """One moof+mdat fragment encrypted, as consecutive pieces."""
        ...

_CHUNK = 1 << 20


def _read_exact(src: BinaryIO, n: int, what: str) -> bytes:
    data = src.read(n)
    if len(data) != n:
        raise Mp4FormatError(f"file ends inside {what} ({len(data)} of {n} bytes)",
                             box_path=what)
    return data


def _read_into(src: BinaryIO, out: memoryview, what: str) -> None:
    """Fill ``out`` from ``src`` (several reads if the stream returns short ones)."""
    done = 0
    want = len(out)
    while done < want:
        got = src.readinto(out[done:])  # type: ignore[attr-defined]
        if not got:
            raise Mp4FormatError(f"file ends inside {what} ({done} of {want} bytes)",
                                 box_path=what)
        done += got


def _next_box(src: BinaryIO) -> tuple[bytes, bytes, int] | None:
    """(fourcc, header bytes, payload size) of the next top-level box, None at EOF."""
    head = src.read(8)
    if not head:
        return None
    if len(head) < 8:
        raise Mp4FormatError(f"truncated box header ({len(head)} bytes)", box_path="file")
    size, fourcc = struct.unpack(">I4s", head)
    name = fourcc.decode("latin-1")
    if size == 1:
        ext = _read_exact(src, 8, name)
        head += ext
        size = struct.unpack(">Q", ext)[0]
    elif size == 0:
        return fourcc, head, -1  # the box runs to the end of the file
    if size < len(head):
        raise Mp4FormatError(f"box size {size} smaller than its header", box_path=name)
    return fourcc, head, size - len(head)


def _payload(src: BinaryIO, fourcc: bytes, n: int) -> bytes:
    if n < 0:
        return src.read()
    return _read_exact(src, n, fourcc.decode("latin-1"))


def encrypt_stream(enc: FragmentEncryptor, src: BinaryIO, dst: BinaryIO, *,
                   first_segment_index: int = 0) -> None:
    """Encrypt a whole fragmented file box by box with ``enc`` (see
    :meth:`.encryptor.Mp4Encryptor.encrypt_stream`)."""
    init = enc.encrypted_init()
    new_moov = next(init[b.start:b.end] for b in iter_boxes(init) if b.type == b"moov")
    sink: IO[bytes] = dst
    spool: IO[bytes] | None = None
    out_pos = 0
    in_pos = 0
    sidxs: list[tuple[bytes, int, int]] = []  # (raw, input end, position in sink)
    deltas: list[tuple[int, int]] = []
    moved: dict[int, int] = {}
    segment = first_segment_index
    seen_moov = False
    dst_seekable = dst.seekable()
    frag_buf = bytearray()

    def write(b: bytes | bytearray | memoryview) -> None:
        nonlocal out_pos
        sink.write(b)
        out_pos += len(b)

    while True:
        nxt = _next_box(src)
        if nxt is None:
            break
        fourcc, head, n = nxt
        start = in_pos
        in_pos += len(head) + max(n, 0)
        if fourcc == b"moov":
            raw = head + _payload(src, fourcc, n)
            if hashlib.sha256(raw).digest() != enc.moov_digest:
                raise UsageError("the file's moov differs from the init segment the "
                                 "Mp4Encryptor was made with")
            write(new_moov)
            seen_moov = True
        elif fourcc == b"sidx":
            raw = head + _payload(src, fourcc, n)
            in_pos = start + len(raw)
            if not dst_seekable and spool is None:
                spool = tempfile.SpooledTemporaryFile(max_size=16 << 20)
                sink = spool
            sidxs.append((raw, in_pos, sink.tell()))
            write(raw)
        elif fourcc == b"moof":
            if not seen_moov:
                raise Mp4FormatError("moof before moov", box_path="file/moof")
            moof = head + _payload(src, fourcc, n)
            in_pos = start + len(moof)
            nxt2 = _next_box(src)
            if nxt2 is None or nxt2[0] != b"mdat":
                raise Mp4FormatError("moof not followed by mdat", box_path="file/moof")
            _, mhead, mn = nxt2
            if mn < 0:
                mdat = mhead + _payload(src, b"mdat", mn)
                fragment = memoryview(bytearray(moof + mdat))
            else:
                # moof, mdat header and payload read into one reused buffer (no joins)
                total = len(moof) + len(mhead) + mn
                if len(frag_buf) < total:
                    frag_buf = bytearray(max(total, len(frag_buf) * 5 // 4))
                fragment = memoryview(frag_buf)[:total]
                fragment[:len(moof)] = moof
                fragment[len(moof):len(moof) + len(mhead)] = mhead
                _read_into(src, fragment[len(moof) + len(mhead):], "mdat")
            in_pos += len(fragment) - len(moof)
            # encrypted in place in the read buffer; written as a few pieces, never joined
            pieces = enc.encrypt_segment_parts(fragment, segment_index=segment, in_place=True)
            del fragment
            segment += 1
            deltas.append((start, sum(map(len, pieces)) - (in_pos - start)))
            moved[start] = out_pos
            for piece in pieces:
                write(piece)
            del pieces
        elif fourcc == b"mfra":
            raw = head + _payload(src, fourcc, n)
            write(patch_mfra(raw, moved))
        else:
            write(head)
            if n < 0:
                shutil.copyfileobj(src, sink, _CHUNK)
                break
            left = n
            while left:
                chunk = src.read(min(left, _CHUNK))
                if not chunk:
                    raise Mp4FormatError("file ends inside a box",
                                         box_path=fourcc.decode("latin-1"))
                write(chunk)
                left -= len(chunk)
    if not seen_moov:
        raise Mp4FormatError("no moov box in the file", box_path="file")
    end = sink.tell()
    for raw, in_end, at in sidxs:
        sink.seek(at)
        sink.write(patch_sidx(raw, in_end, deltas))
    sink.seek(end)
    if spool is not None:
        spool.seek(0)
        shutil.copyfileobj(spool, dst, _CHUNK)
        spool.close()
