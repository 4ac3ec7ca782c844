"""Atomic output: write to a temporary path on the same file system, then rename."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .errors import OutputError

log = logging.getLogger("speke_packager")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[object]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is untouched."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        _unlink(tmp)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        _unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_write(path, "wb") as fh:
        fh.write(data)  # type: ignore[attr-defined]


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def _unlink(p: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(p)


_STALE = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)\.[^.]+\.partial|old-(?P<old>\d+))$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary folders that dead processes left beside ``target``; returns them."""
    target = Path(target)
    removed: list[Path] = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _STALE.match(p.name)
        if m is None or m.group("name") != target.name or not p.is_dir() or p.is_symlink():
            continue
        pid = int(m.group("pid") or m.group("old"))
        if pid == os.getpid() or _alive(pid):
            continue
        if m.group("old") and not target.exists():
            # killed between the two renames of commit(): the earlier output is here, restore it
            with contextlib.suppress(OSError):
                os.replace(p, target)
                log.info("restored %s from %s (interrupted replacement)", target, p.name)
                continue
        shutil.rmtree(p, ignore_errors=True)
        log.info("removed %s, left behind by an interrupted run (process %d)", p, pid)
        removed.append(p)
    return removed


class AtomicDirectory:
    """Build a directory under a temporary name beside ``target``; ``commit()`` renames it.

    If ``target`` exists and is non-empty, it is refused unless ``force``; with ``force`` the old
    directory is replaced only at commit time (an error leaves it intact).

    The temporary folder is ``.<name>.<pid>.<random>.partial``. A process killed outright
    (SIGKILL, power loss) leaves it behind, hidden; the next run for the same target removes
    such folders (and ``.<name>.old-<pid>`` ones) whose process no longer exists."""

    def __init__(self, target: str | os.PathLike[str], *, force: bool = False) -> None:
        self.target = Path(target).absolute()
        if self.target.exists():
            if not self.target.is_dir():
                raise OutputError(f"{self.target} exists and is not a directory")
            if any(self.target.iterdir()) and not force:
                raise OutputError(f"{self.target} is not empty (use --force to replace it)")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.stale_removed = remove_stale_partials(self.target)
        try:
            self.path = Path(
                tempfile.mkdtemp(prefix=f".{self.target.name}.{os.getpid()}.", suffix=".partial",
                                 dir=self.target.parent)
            )
        except OSError as exc:
            raise OutputError(f"cannot create a folder beside {self.target}: {exc}") from exc
        self._done = False

    def commit(self) -> Path:
        old: Path | None = None
        try:
            if self.target.exists():
                old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
                os.replace(self.target, old)
            os.replace(self.path, self.target)
        except OSError as exc:
            if old is not None and not self.target.exists():
                os.replace(old, self.target)
            raise OutputError(f"cannot publish {self.target}: {exc}") from exc
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._done = True
        return self.target

    def abort(self) -> None:
        if not self._done:
            shutil.rmtree(self.path, ignore_errors=True)
            self._done = True

    def __enter__(self) -> AtomicDirectory:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._done:
            self.commit()


def warn_if_exposed(path: str | os.PathLike[str], what: str = "private key file") -> bool:
    """Log a warning (and return True) when ``path`` can be read or written by group or others.

    Private keys (delivery keys, TLS keys, PKCS#12 bundles) should be ``chmod 600``. Missing files
    are left to the code that opens them."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    if not stat.S_ISREG(mode) or not mode & (stat.S_IRWXG | stat.S_IRWXO):
        return False
    log.warning("%s %s is accessible by other users (mode %s); restrict it with chmod 600",
                what, os.fspath(path), oct(stat.S_IMODE(mode)))
    return True


class ThreadScratch(threading.local):
    """One reusable work buffer per thread (and per worker process).

    Fresh memory costs a page fault per 4 KiB, about as much as the cipher itself, so
    segment-sized work reuses one buffer and RSS stays flat. A request above ``cap`` bytes gets a
    fresh buffer that is not kept. A buffer that is too small is replaced, never resized: views of
    the old one may still be alive."""

    def __init__(self, cap: int | None = None) -> None:
        self.cap = cap
        self.buf = bytearray(0)

    def get(self, size: int) -> bytearray:
        """A buffer of at least ``size`` bytes (its contents are garbage)."""
        if self.cap is not None and size > self.cap:
            return bytearray(size)
        if len(self.buf) < size:
            self.buf = bytearray(max(size, len(self.buf) * 5 // 4, 1 << 20))
        return self.buf

    def view(self, size: int) -> memoryview:
        """The first ``size`` bytes of :meth:`get` as a memoryview."""
        return memoryview(self.get(size))[:size]

    def fill(self, readinto: Callable[[memoryview], int | None], hint: int) -> memoryview:
        """Everything ``readinto`` gives until it returns 0 or None (EOF), in this thread's
        buffer (``hint``: the expected size; one spare byte lets EOF be seen without growing).
        ``OSError`` propagates: callers name the input."""
        buf = self.get(max(hint, 0) + 1)
        n = 0
        while True:
            if n == len(buf):  # longer than announced: a bigger buffer, same contents
                bigger = self.get(2 * n)
                if bigger is not buf:
                    bigger[:n] = buf[:n]
                buf = bigger
            with memoryview(buf)[n:] as room:
                got = readinto(room)
            if not got:
                return memoryview(buf)[:n]
            n += got


IOV_MAX = min(1024, os.sysconf("SC_IOV_MAX")) if hasattr(os, "sysconf") else 1024

Buffer = bytes | bytearray | memoryview


def writev_all(fd: int, parts: Sequence[Buffer]) -> int:
    """Every part written to ``fd`` with as few ``os.writev`` calls as possible (short writes
    resumed); returns the byte count. ``OSError`` propagates: callers name the file."""
    views: deque[memoryview] = deque(m for m in (memoryview(p).cast("B") for p in parts)
                                     if len(m))
    total = 0
    while views:
        n = os.writev(fd, [views[i] for i in range(min(len(views), IOV_MAX))])
        total += n
        while views and n >= len(views[0]):
            n -= len(views.popleft())
        if n:
            views[0] = views[0][n:]
    return total


def write_parts_atomic(path: str | os.PathLike[str], parts: Sequence[Buffer]) -> int:
    """``parts`` into a temporary file beside ``path``, renamed over it once complete; returns
    the byte count. No fsync (an error or a killed process never leaves a partial ``path``;
    durability across a power cut is the caller's business). Raises :class:`OutputError`."""
    target = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(target))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        try:
            total = writev_all(fd, parts)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return total
