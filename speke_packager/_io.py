"""Atomic output (write to a temporary path on the same file system, then rename) and the one
way input files of a package are opened (:func:`open_input`)."""

from __future__ import annotations

import contextlib
import errno
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
from typing import TypeVar

from .errors import ManifestError, OutputError, UnsafeInputError

log = logging.getLogger("speke_packager")
_T = TypeVar("_T")


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
    """Whether process ``pid`` still runs. A zombie (killed, not yet reaped: in a container
    whose init does not reap orphans it stays one) has stopped writing: not alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:  # no procfs (not Linux), or it just ended
        return True
    # "pid (comm) S ...": the state follows the last ')' (comm may hold spaces and parentheses)
    return stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")


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


def check_output_folder(target: str | os.PathLike[str], *, force: bool = False) -> None:
    """Refuse an output folder :class:`AtomicDirectory` would refuse: a file, or a non-empty
    folder without ``force`` (:class:`OutputError`). For commands that check it before long
    work; AtomicDirectory checks it again."""
    path = Path(target).absolute()
    if path.exists():
        if not path.is_dir():
            raise OutputError(f"{path} exists and is not a directory")
        if any(path.iterdir()) and not force:
            raise OutputError(f"{path} is not empty (use --force to replace it)")


class AtomicDirectory:
    """Build a directory under a temporary name beside ``target``; ``commit()`` renames it.

    If ``target`` exists and is non-empty, it is refused unless ``force``; with ``force`` the old
    directory is replaced only at commit time (an error leaves it intact).

    The temporary folder is ``.<name>.<pid>.<random>.partial``. A process killed outright
    (SIGKILL, power loss) leaves it behind, hidden; the next run for the same target removes
    such folders (and ``.<name>.old-<pid>`` ones) whose process no longer exists."""

    def __init__(self, target: str | os.PathLike[str], *, force: bool = False) -> None:
        self.target = Path(target).absolute()
        check_output_folder(self.target, force=force)
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


# ---- input files of a package -----------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PROC_FD = Path("/proc/self/fd")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _regular(mode: int, what: str, rel: str) -> None:
    if not stat.S_ISREG(mode):
        raise UnsafeInputError(f"{what} {rel} is {_kind(mode)}, not a regular file; refused")


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def open_input(root: str | os.PathLike[str], rel: str, *, what: str = "file") -> int:
    """A read-only descriptor of the regular file ``rel`` inside the package folder ``root``.

    Every input file of a package goes through here. ``root`` is resolved first; ``rel`` is
    refused (:class:`UnsafeInputError`, one line naming the entry) when its name holds a NUL or
    control character, when it resolves outside ``root`` (a symbolic link or ``..`` leaving the
    package; links that stay inside are followed), or when it is not a regular file (folder,
    FIFO, device, socket). The open never blocks (``O_NONBLOCK``: a FIFO is seen by ``fstat``,
    not waited for), never follows a link in the last component (``O_NOFOLLOW``: the resolved
    path is opened), and on Linux the path of the opened descriptor is checked against ``root``
    again, so a folder swapped for a link between the check and the open is caught too.
    A missing file is a :class:`ManifestError` (the manifest names it); the caller closes
    the descriptor."""
    if _CONTROL.search(rel):
        raise UnsafeInputError(f"{what} {rel!r}: NUL or control character in the name")
    top = os.path.realpath(root)
    real = os.path.realpath(os.path.join(top, rel))
    if not _inside(top, real):
        raise UnsafeInputError(f"{what} {rel} resolves outside the package folder "
                               f"(a symbolic link or '..'); refused")
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | \
        getattr(os, "O_NOCTTY", 0)
    try:
        _regular(os.lstat(real).st_mode, what, rel)  # sockets cannot even be opened
        fd = os.open(real, flags)
    except FileNotFoundError:
        raise ManifestError(f"{what} {rel} is missing") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            raise UnsafeInputError(f"{what} {rel} changed while it was opened and is not a "
                                   "regular file any more; refused") from None
        raise ManifestError(f"cannot read {what} {rel}: {exc.strerror or exc}") from None
    try:
        _regular(os.fstat(fd).st_mode, what, rel)
        if _PROC_FD.is_dir():
            try:
                opened = os.readlink(_PROC_FD / str(fd))
            except OSError:
                opened = real
            if not _inside(top, opened):
                raise UnsafeInputError(f"{what} {rel} resolves outside the package folder; "
                                       "refused")
        return fd
    except BaseException:
        os.close(fd)
        raise


def input_exists(root: str | os.PathLike[str], rel: str, *, what: str = "file") -> bool:
    """True for a regular file that :func:`open_input` accepts, False when ``rel`` is missing;
    an entry that exists but is refused raises :class:`UnsafeInputError`."""
    if not os.path.lexists(os.path.join(os.path.realpath(root), rel)):
        return False
    os.close(open_input(root, rel, what=what))
    return True


def input_path(root: str | os.PathLike[str], rel: str) -> Path:
    """The resolved path of ``rel`` inside ``root`` (for comparisons, never for opening)."""
    return Path(os.path.realpath(os.path.join(os.path.realpath(root), rel)))


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


def write_fd_atomic(path: str | os.PathLike[str], fill: Callable[[int], _T], *,
                    mode: int = 0o666, make_folder: bool = False) -> _T:
    """``fill(fd)`` on a new temporary file beside ``path``, renamed over it once ``fill``
    returns; returns what ``fill`` returns. No fsync (an error or a killed process never
    leaves a partial ``path``; durability across a power cut is the caller's business).
    ``mode`` is the new file's permission bits (before the umask); ``make_folder`` creates
    the missing folders first. An ``OSError`` becomes :class:`OutputError` naming ``path``;
    any other exception propagates; either way the temporary file is removed."""
    target = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(target))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        if make_folder:
            os.makedirs(folder, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        try:
            result = fill(fd)
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
    return result


def write_parts_atomic(path: str | os.PathLike[str], parts: Sequence[Buffer], *,
                       make_folder: bool = False) -> int:
    """``parts`` into a temporary file beside ``path``, renamed over it once complete; returns
    the byte count (:func:`write_fd_atomic`; ``make_folder``: create the missing folders
    first). Raises :class:`OutputError`."""
    return write_fd_atomic(path, lambda fd: writev_all(fd, parts), make_folder=make_folder)


def remove_file(path: str | os.PathLike[str]) -> None:
    """Remove the file ``path``; a missing one is not an error. :class:`OutputError` else."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"cannot delete {os.fspath(path)}: {exc.strerror or exc}") from None
