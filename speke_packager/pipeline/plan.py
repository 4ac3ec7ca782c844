"""The output plan: every output file as ordered pieces of input bytes, each with a transform.

Manifest jobs register pieces (an init section, a media segment, a byte range); a piece
registered twice (CMAF segments shared by HLS and DASH) is encrypted once. :func:`execute` runs
the transforms on a thread pool (the cipher calls release the GIL) with a bounded window, writes
the results in order from the calling thread, and records where each piece landed, so manifests
can point at the new byte ranges. Bytes between registered ranges are copied verbatim.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import ManifestError, OutputError

Transform = Callable[[bytes], bytes]
# A piece whose bytes depend on where the other pieces of its file landed (a sidx box); it must
# keep its size. Called with {input offset: (output offset, output length)} of that file.
LateTransform = Callable[[bytes, dict[int, tuple[int, int]]], bytes]

PieceKey = tuple[str, int | None, int | None]  # (relative path, offset, length)


@dataclass(slots=True)
class Piece:
    rel: str  # path relative to the package root (same in input and output)
    offset: int | None  # None: the whole file
    length: int | None
    transform: Transform | None  # None: copy
    clear: bool = True  # False when the piece's bytes are encrypted
    late: LateTransform | None = None

    @property
    def key(self) -> PieceKey:
        return (self.rel, self.offset, self.length)


@dataclass(slots=True)
class Plan:
    src_root: Path
    pieces: dict[PieceKey, Piece] = field(default_factory=dict)
    placed: dict[PieceKey, tuple[int, int]] = field(default_factory=dict)  # -> (offset, length)
    by_rel: dict[str, list[Piece]] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0

    def add(self, piece: Piece) -> Piece:
        """Register ``piece``; returns the one already registered for the same bytes, if any."""
        have = self.pieces.get(piece.key)
        if have is not None:
            return have
        self.pieces[piece.key] = piece
        self.by_rel.setdefault(piece.rel, []).append(piece)
        return piece

    def source(self, rel: str) -> Path:
        return self.src_root / rel

    def read(self, rel: str, offset: int | None = None, length: int | None = None,
             *, what: str = "segment") -> bytes:
        """Bytes of an input file (or a range of it); a missing file or short range raises."""
        path = self.source(rel)
        try:
            with path.open("rb") as fh:
                if offset is None:
                    return fh.read()
                size = os.fstat(fh.fileno()).st_size
                if offset > size or (length is not None and offset + length > size):
                    raise ManifestError(f"{what} {rel}: byte range {length}@{offset} runs past "
                                        f"the end of the file ({size} bytes)")
                fh.seek(offset)
                data = fh.read(length if length is not None else -1)
        except FileNotFoundError:
            raise ManifestError(f"{what} {rel} is missing") from None
        except IsADirectoryError:
            raise ManifestError(f"{what} {rel} is a folder, not a file") from None
        except OSError as exc:
            raise ManifestError(f"cannot read {what} {rel}: {exc.strerror or exc}") from None
        if length is not None and len(data) != length:
            raise ManifestError(f"{what} {rel}: byte range {length}@{offset} runs past the end "
                                f"of the file")
        return data

    def files(self) -> dict[str, list[Piece]]:
        by_file: dict[str, list[Piece]] = {}
        for p in self.pieces.values():
            by_file.setdefault(p.rel, []).append(p)
        for rel, ps in by_file.items():
            whole = [p for p in ps if p.offset is None]
            if whole and len(ps) > 1:
                raise ManifestError(f"{rel} is used both whole and by byte ranges")
            ps.sort(key=lambda p: p.offset or 0)
            for a, b in itertools.pairwise(ps):
                assert a.offset is not None and a.length is not None and b.offset is not None
                if a.offset + a.length > b.offset:
                    raise ManifestError(f"{rel}: byte ranges {a.length}@{a.offset} and "
                                        f"{b.length}@{b.offset} overlap")
        return by_file

    def new_range(self, rel: str, offset: int | None, length: int | None) -> tuple[int, int]:
        """(offset, length) in the output of the piece registered for these input bytes."""
        return self.placed[(rel, offset, length)]


def _work(plan: Plan, piece: Piece) -> tuple[int, bytes]:
    data = plan.read(piece.rel, piece.offset, piece.length)
    return len(data), (piece.transform(data) if piece.transform is not None else data)


def _gap_copy(src: Path, start: int, end: int | None, out: BinaryIO) -> int:
    """Copy input bytes [start, end) of ``src`` to ``out``; returns the count."""
    n = 0
    with src.open("rb") as fh:
        fh.seek(start)
        while end is None or start + n < end:
            want = 1 << 20 if end is None else min(1 << 20, end - start - n)
            chunk = fh.read(want)
            if not chunk:
                break
            out.write(chunk)
            n += len(chunk)
    return n


def execute(plan: Plan, out_root: Path, *, jobs: int,
            progress: Callable[[int, int], None] | None = None) -> None:
    """Run every piece's transform and write all output files below ``out_root``."""
    files = plan.files()
    order: list[Piece] = [p for rel in sorted(files) for p in files[rel]]
    total = len(order)
    done = 0
    window = max(2, jobs * 3)
    executor = cf.ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="encrypt")
    pending: deque[tuple[Piece, cf.Future[tuple[int, bytes]]]] = deque()
    it: Iterator[Piece] = iter(order)
    current: tuple[str, BinaryIO, int, int] | None = None  # rel, handle, out pos, in pos
    late: list[tuple[Piece, int]] = []
    try:
        def refill() -> None:
            while len(pending) < window:
                p = next(it, None)
                if p is None:
                    return
                pending.append((p, executor.submit(_work, plan, p)))

        def close_current() -> None:
            nonlocal current
            if current is None:
                return
            rel, fh, pos, in_pos = current
            if files[rel][0].offset is not None:  # ranges: copy the tail after the last range
                pos += _gap_copy(plan.source(rel), in_pos, None, fh)
            spans = {p.offset: plan.placed[p.key] for p in files[rel]
                     if p.offset is not None}
            for p, at in late:
                assert p.late is not None
                body = plan.read(p.rel, p.offset, p.length, what="index")
                new = p.late(body, spans)
                if len(new) != len(body):
                    raise OutputError(f"{rel}: rewritten index changed size")
                fh.seek(at)
                fh.write(new)
                fh.seek(0, os.SEEK_END)
            late.clear()
            fh.close()
            plan.bytes_out += pos
            current = None

        refill()
        while pending:
            piece, fut = pending.popleft()
            n_in, data = fut.result()
            refill()
            if current is None or current[0] != piece.rel:
                close_current()
                target = out_root / piece.rel
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    new_fh: BinaryIO = target.open("xb")
                except OSError as exc:
                    raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
                current = (piece.rel, new_fh, 0, 0)
            rel, fh, pos, in_pos = current
            if piece.offset is not None and piece.offset > in_pos:
                pos += _gap_copy(plan.source(rel), in_pos, piece.offset, fh)
            if piece.late is not None:
                late.append((piece, pos))
            try:
                fh.write(data)
            except OSError as exc:
                raise OutputError(f"cannot write {out_root / rel}: {exc.strerror or exc}") from exc
            plan.placed[piece.key] = (pos, len(data))
            plan.bytes_in += n_in
            pos += len(data)
            in_pos = (piece.offset + (piece.length or 0)) if piece.offset is not None else 0
            current = (rel, fh, pos, in_pos)
            done += 1
            if progress is not None:
                progress(done, total)
        close_current()
    finally:
        if current is not None:
            current[1].close()
        for _, f in pending:
            f.cancel()
        executor.shutdown(wait=True, cancel_futures=True)
