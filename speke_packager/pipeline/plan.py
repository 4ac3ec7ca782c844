"""The output plan: every output file as ordered pieces of input bytes, each with a transform.

Manifest jobs register pieces (an init section, a media segment, a byte range); a piece
registered twice (CMAF segments shared by HLS and DASH) is encrypted once. :func:`execute` runs
the pieces with a bounded window and records where each piece landed, so manifests can point at
the new byte ranges. Bytes between registered ranges are copied verbatim.

With ``jobs > 1`` the pieces run on ``jobs`` worker threads when the cipher library releases
the GIL in its cipher calls (cryptography >= 51: ``update_into`` runs detached, as do the numpy
gathers and scatters of cbcs and the ``preadv`` / ``writev`` of every piece), else in forked
worker processes. Threads cost no fork, no copy-on-write faults of the inherited heap, no
pickling and one set of reused buffers per thread; measured on a 2-core machine they used less
CPU than two processes for every scheme. A transform whose work is mostly Python (SAMPLE-AES:
PES parsing and remuxing) says so with a true ``holds_gil`` attribute, and a plan with such a
piece keeps the processes, which run it on every core. Each worker reads its input piece,
transforms it and writes the result itself: a whole-file piece straight to its output file, a
byte range to a scratch file that the calling thread appends to the output in order
(``sendfile``, in the kernel). With processes only small metadata crosses the process
boundary, never segment bytes. ``jobs == 1`` runs the same code on one thread.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import os
import pickle
import shutil
import signal
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .._io import ThreadScratch, input_exists, open_input, writev_all
from ..crypto import cipher_calls_release_gil
from ..errors import ManifestError, MediaError, OutputError, SpekePackagerError

if TYPE_CHECKING:
    from ..media.mp4.layout import Span

Transform = Callable[[bytes], bytes]
Part = bytes | bytearray | memoryview


@runtime_checkable
class PartsTransform(Protocol):
    """A transform that can also work on a reused, writable input buffer and hand back the
    output as consecutive parts (written with ``os.writev``, never joined)."""

    def __call__(self, data: bytes) -> bytes: ...

    def parts(self, buf: memoryview) -> Sequence[Part]:
        """The output for the input bytes in ``buf``; ``buf`` belongs to the caller and may be
        changed in place; the parts may reference it and are written before it is reused."""
        ...
# A piece whose bytes depend on where the other pieces of its file landed (a sidx box); it must
# keep its size. Called with {input offset: (output offset, output length)} of that file.
LateTransform = Callable[[bytes, dict[int, tuple[int, int]]], bytes]

PieceKey = tuple[str, int | None, int | None]  # (relative path, offset, length)


@runtime_checkable
class Generated(Protocol):
    """An input file that is made when it is needed, not read from disk (a media segment cut
    from a progressive MP4 by the native fragmenter)."""

    def produce(self) -> memoryview:
        """The file's bytes in a reused per-thread buffer that the caller may change in place;
        valid until the next call in this thread."""
        ...


@runtime_checkable
class GeneratedFile(Protocol):
    """A generated file read by byte ranges only (a native single-file rendition: init, sidx,
    fragments); every range the plan asks for is one of its parts, and no byte lies between
    them."""

    size: int

    def produce(self) -> memoryview: ...

    def produce_range(self, offset: int, length: int) -> memoryview:
        """The part at ``offset`` (``length`` bytes) in a reused per-thread buffer that the
        caller may change in place."""
        ...

    def layout(self) -> tuple[Span, Span | None, list[tuple[int, int]]]:
        """(init span, sidx span or None, fragment (offset, length)s), as
        :func:`..media.mp4.layout.split_single_file` finds them in a file."""
        ...


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
    opened: set[str] = field(default_factory=set)  # every input file read or probed
    generated: dict[str, Generated] = field(default_factory=dict)  # made, not read

    def add(self, piece: Piece) -> Piece:
        """Register ``piece``; returns the one already registered for the same bytes, if any."""
        have = self.pieces.get(piece.key)
        if have is not None:
            return have
        self.pieces[piece.key] = piece
        self.by_rel.setdefault(piece.rel, []).append(piece)
        return piece

    def source(self, rel: str) -> Path:
        """Where ``rel`` is (for messages and comparisons: open it with :meth:`open`)."""
        return self.src_root / rel

    def open(self, rel: str, *, what: str = "segment") -> int:
        """A descriptor of the input file ``rel``: :func:`.._io.open_input` (a regular file
        inside the package folder, else a one-line :class:`UnsafeInputError`)."""
        self.opened.add(rel)
        return open_input(self.src_root, rel, what=what)

    def exists(self, rel: str, *, what: str = "segment") -> bool:
        """True for an input file that :meth:`open` accepts, False when it is missing."""
        if rel in self.generated:
            return True
        if input_exists(self.src_root, rel, what=what):
            self.opened.add(rel)
            return True
        return False

    def read(self, rel: str, offset: int | None = None, length: int | None = None,
             *, what: str = "segment") -> bytes:
        """Bytes of an input file (or a range of it); a missing file or short range raises."""
        gen = self.generated.get(rel)
        if isinstance(gen, GeneratedFile) and offset is not None:
            return bytes(gen.produce_range(offset, length if length is not None
                                           else gen.size - offset))
        if gen is not None:
            whole = bytes(gen.produce())
            start = offset or 0
            return whole[start:None if length is None else start + length]
        fd = self.open(rel, what=what)
        try:
            with os.fdopen(fd, "rb", closefd=False) as fh:
                if offset is None:
                    return fh.read()
                size = os.fstat(fd).st_size
                if offset > size or (length is not None and offset + length > size):
                    raise ManifestError(f"{what} {rel}: byte range {length}@{offset} runs past "
                                        f"the end of the file ({size} bytes)")
                fh.seek(offset)
                data = fh.read(length if length is not None else -1)
        except OSError as exc:
            raise ManifestError(f"cannot read {what} {rel}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
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


# ---- one piece, in a worker process or thread ------------------------------------------------



_BUFFERS = ThreadScratch()  # the reused input buffer of each worker


def _write_all(fd: int, parts: Sequence[Part], what: str) -> int:
    """Write every part to ``fd`` with as few ``writev`` calls as possible; returns the count."""
    try:
        return writev_all(fd, parts)
    except OSError as exc:
        raise OutputError(f"cannot write {what}: {exc.strerror or exc}") from exc


def _copy_range(src_fd: int, dst_fd: int, start: int, count: int, what: str) -> int:
    """Copy ``count`` bytes of ``src_fd`` from ``start`` to the position of ``dst_fd`` (kernel
    copy); returns the count actually copied (short at the end of the source)."""
    done = 0
    try:
        while done < count:
            n = os.sendfile(dst_fd, src_fd, start + done, min(count - done, 1 << 30))
            if n == 0:
                break
            done += n
    except OSError as exc:
        raise OutputError(f"cannot write {what}: {exc.strerror or exc}") from exc
    return done


def _open_input(plan: Plan, piece: Piece, what: str = "segment") -> tuple[int, int, int]:
    """(fd, start, length) of a piece's input bytes, checked against the file's size."""
    rel = piece.rel
    fd = plan.open(rel, what=what)
    try:
        st = os.fstat(fd)
        size = st.st_size
        if piece.offset is None:
            return fd, 0, size
        length = piece.length if piece.length is not None else max(0, size - piece.offset)
        if piece.offset > size or piece.offset + length > size:
            raise ManifestError(f"{what} {rel}: byte range {length}@{piece.offset} runs past "
                                f"the end of the file ({size} bytes)")
        return fd, piece.offset, length
    except BaseException:
        os.close(fd)
        raise


def _read_exact(fd: int, start: int, buf: memoryview, rel: str) -> None:
    got = 0
    try:
        while got < len(buf):
            n = os.preadv(fd, [buf[got:]], start + got)
            if n == 0:
                raise ManifestError(f"segment {rel} became shorter while it was read")
            got += n
    except OSError as exc:
        raise ManifestError(f"cannot read segment {rel}: {exc.strerror or exc}") from None


def _create(target: Path) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc


def _run_piece(plan: Plan, piece: Piece, target: Path) -> tuple[int, int]:
    """Read, transform and write one piece to ``target``; returns (bytes in, bytes out)."""
    gen = plan.generated.get(piece.rel)
    if gen is not None:
        return _run_generated(gen, piece, target)
    in_fd, start, length = _open_input(plan, piece)
    try:
        out_fd = _create(target)
        try:
            what = str(target)
            t = piece.transform
            if t is None:
                n = _copy_range(in_fd, out_fd, start, length, what)
                if n != length:
                    raise ManifestError(f"segment {piece.rel} became shorter while it was read")
                return length, n
            if isinstance(t, PartsTransform):
                buf = _BUFFERS.view(length)
                _read_exact(in_fd, start, buf, piece.rel)
                return length, _write_all(out_fd, t.parts(buf), what)
            data = os.pread(in_fd, length, start)
            if len(data) != length:
                raise ManifestError(f"segment {piece.rel} became shorter while it was read")
            return length, _write_all(out_fd, [t(data)], what)
        finally:
            os.close(out_fd)
    finally:
        os.close(in_fd)


def _run_generated(gen: Generated, piece: Piece, target: Path) -> tuple[int, int]:
    """A generated file: made in a reused buffer, transformed there (in place where the
    transform can), written once."""
    if piece.offset is None:
        buf = gen.produce()
    elif isinstance(gen, GeneratedFile):
        buf = gen.produce_range(piece.offset, piece.length if piece.length is not None
                                else gen.size - piece.offset)
    else:
        raise ManifestError(f"{piece.rel}: byte ranges of a generated segment")
    out_fd = _create(target)
    try:
        what = str(target)
        t = piece.transform
        if t is None:
            return len(buf), _write_all(out_fd, [buf], what)
        if isinstance(t, PartsTransform):
            return len(buf), _write_all(out_fd, t.parts(buf), what)
        return len(buf), _write_all(out_fd, [t(bytes(buf))], what)
    finally:
        os.close(out_fd)


@dataclass(slots=True)
class _Run:
    """What a worker needs: inherited by forked workers through :data:`_RUNS`."""

    plan: Plan
    order: list[Piece]
    out_root: Path
    scratch: Path

    def target(self, i: int) -> Path:
        p = self.order[i]
        return self.out_root / p.rel if p.offset is None else self.scratch / str(i)

    def run(self, i: int) -> tuple[int, int]:
        return _run_piece(self.plan, self.order[i], self.target(i))


_RUNS: dict[int, _Run] = {}  # token -> run; set before the pool forks its workers
_TOKENS = itertools.count()


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group (and SIGTERM a whole container or systemd unit):
    # the parent alone handles them, and waits for us
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def _proc_piece(token: int, i: int) -> tuple[int, int]:
    try:
        return _RUNS[token].run(i)
    except SpekePackagerError as exc:
        try:
            pickle.loads(pickle.dumps(exc))  # noqa: S301 (our own object, just pickled)
        except Exception:  # an error that cannot cross the process boundary
            fallback = MediaError(str(exc))
        else:
            raise
    # raised outside the handler: no __context__ chain back to the unpicklable error (a
    # reducer that pickles the chain, such as the one Dask's workers install, would fail on it)
    raise fallback


def _executor(run: _Run, token: int, jobs: int, total: int, processes: bool | None
              ) -> tuple[cf.Executor, Callable[[int], cf.Future[tuple[int, int]]]]:
    workers = max(1, min(jobs, total))
    if processes is None:
        processes = not cipher_calls_release_gil() or any(
            getattr(p.transform, "holds_gil", False) for p in run.order)
    if workers > 1 and processes:
        import multiprocessing  # (threads do not need it: not imported at start-up)

        if "fork" not in multiprocessing.get_all_start_methods():
            processes = False
    if workers > 1 and processes:
        pool = cf.ProcessPoolExecutor(max_workers=workers,
                                      mp_context=multiprocessing.get_context("fork"),
                                      initializer=_worker_init)
        return pool, lambda i: pool.submit(_proc_piece, token, i)
    threads = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="encrypt")
    return threads, lambda i: threads.submit(run.run, i)


# ---- the calling process: order, gaps, placement -------------------------------------------

def _gap_copy(plan: Plan, rel: str, span: tuple[int, int | None], out_fd: int, what: str
              ) -> int:
    """Copy input bytes [start, end) of ``rel`` to ``out_fd``; returns the count."""
    start, end = span
    gen = plan.generated.get(rel)
    if gen is not None:  # made by parts: every byte belongs to a piece
        size = gen.size if isinstance(gen, GeneratedFile) else start
        if (size if end is None else min(end, size)) > start:
            raise ManifestError(f"{rel}: bytes from {start} of a generated file belong to no "
                                "piece")
        return 0
    fd = plan.open(rel)
    try:
        size = os.fstat(fd).st_size
        stop = size if end is None else min(end, size)
        return _copy_range(fd, out_fd, start, max(0, stop - start), what)
    finally:
        os.close(fd)


def execute(plan: Plan, out_root: Path, *, jobs: int,
            progress: Callable[[int, int], None] | None = None,
            processes: bool | None = None) -> None:
    """Run every piece's transform and write all output files below ``out_root``.

    ``jobs``: pieces in flight at once. ``processes``: with ``jobs`` above 1, run them in
    forked worker processes (True) or threads (False); None picks threads when the cipher
    library releases the GIL (:func:`..crypto.cipher_calls_release_gil`) and no transform
    ``holds_gil``. The output depends on neither. An error or Ctrl-C waits for the running
    pieces, then propagates."""
    files = plan.files()
    order: list[Piece] = [p for rel in sorted(files) for p in files[rel]]
    total = len(order)
    done = 0
    window = max(2, jobs * 3)
    scratch = Path(tempfile.mkdtemp(prefix=".speke-pieces-", dir=out_root))
    run = _Run(plan, order, out_root, scratch)
    token = next(_TOKENS)
    _RUNS[token] = run
    executor: cf.Executor | None = None
    pending: deque[tuple[int, cf.Future[tuple[int, int]]]] = deque()
    it: Iterator[int] = iter(range(total))
    current: tuple[str, int, int, int] | None = None  # rel, fd, out pos, in pos
    late: list[tuple[Piece, int]] = []
    try:
        executor, submit = _executor(run, token, jobs, total, processes)

        def refill() -> None:
            while len(pending) < window:
                i = next(it, None)
                if i is None:
                    return
                pending.append((i, submit(i)))

        def close_current() -> None:
            nonlocal current
            if current is None:
                return
            rel, fd, pos, in_pos = current
            what = str(out_root / rel)
            if files[rel][0].offset is not None:  # ranges: copy the tail after the last range
                pos += _gap_copy(plan, rel, (in_pos, None), fd, what)
            spans = {p.offset: plan.placed[p.key] for p in files[rel]
                     if p.offset is not None}
            for p, at in late:
                assert p.late is not None
                body = plan.read(p.rel, p.offset, p.length, what="index")
                new = p.late(body, spans)
                if len(new) != len(body):
                    raise OutputError(f"{rel}: rewritten index changed size")
                try:
                    os.pwrite(fd, new, at)
                except OSError as exc:
                    raise OutputError(f"cannot write {what}: {exc.strerror or exc}") from exc
            late.clear()
            current = None
            os.close(fd)
            plan.bytes_out += pos

        refill()
        while pending:
            i, fut = pending.popleft()
            n_in, n_out = fut.result()
            refill()
            piece = order[i]
            plan.bytes_in += n_in
            if piece.offset is None:  # the worker wrote the whole file
                close_current()
                plan.placed[piece.key] = (0, n_out)
                plan.bytes_out += n_out
            else:
                if current is None or current[0] != piece.rel:
                    close_current()
                    current = (piece.rel, _create(out_root / piece.rel), 0, 0)
                rel, fd, pos, in_pos = current
                what = str(out_root / rel)
                if piece.offset > in_pos:
                    pos += _gap_copy(plan, rel, (in_pos, piece.offset), fd, what)
                if piece.late is not None:
                    late.append((piece, pos))
                part = run.target(i)
                with part.open("rb") as fh:
                    if _copy_range(fh.fileno(), fd, 0, n_out, what) != n_out:
                        raise OutputError(f"{what}: a scratch piece is shorter than written")
                part.unlink()
                plan.placed[piece.key] = (pos, n_out)
                pos += n_out
                in_pos = piece.offset + (piece.length or 0)
                current = (rel, fd, pos, in_pos)
            done += 1
            if progress is not None:
                progress(done, total)
        close_current()
    finally:
        if current is not None:
            os.close(current[1])
        for _, f in pending:
            f.cancel()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        _RUNS.pop(token, None)
        shutil.rmtree(scratch, ignore_errors=True)
