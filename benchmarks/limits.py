"""Physical limits measured in the same run: one-thread OpenSSL AES, memory copy, file I/O."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

MB = 1_000_000  # throughput figures are decimal MB/s, like openssl's "1000s of bytes"


def openssl_version() -> str:
    exe = shutil.which("openssl")
    if not exe:
        return "missing"
    return subprocess.run([exe, "version"], capture_output=True, text=True,
                          check=False).stdout.strip()


def openssl_speed(cipher: str, seconds: int = 3) -> float | None:
    """One-thread ``openssl speed -evp CIPHER`` on 16384-byte blocks, in MB/s (None if absent)."""
    exe = shutil.which("openssl")
    if not exe:
        return None
    res = subprocess.run([exe, "speed", "-elapsed", "-seconds", str(seconds), "-bytes", "16384",
                          "-evp", cipher], capture_output=True, text=True, check=False)
    return parse_openssl_speed(res.stdout, cipher)


def parse_openssl_speed(text: str, cipher: str) -> float | None:
    """The 16384-byte column of an ``openssl speed`` table, in MB/s."""
    lines = text.splitlines()
    col = None
    for ln in lines:
        if ln.startswith("type"):
            heads = re.findall(r"(\d+) bytes", ln)
            col = heads.index("16384") if "16384" in heads else None
        elif col is not None and ln.lower().startswith(cipher.lower()):
            vals = re.findall(r"([\d.]+)k", ln[len(cipher):])
            if len(vals) > col:
                return float(vals[col]) * 1000 / MB
    return None


def memcpy_speed(size: int = 64 << 20, repeat: int = 5) -> float:
    """Best-of-``repeat`` MB/s of copying a ``size``-byte buffer into another (slice assign)."""
    src = bytearray(os.urandom(1 << 20)) * (size >> 20)
    dst = bytearray(len(src))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        dst[:] = src
        best = min(best, time.perf_counter() - t0)
    return len(src) / best / MB


def bytes_copy_speed(size: int = 64 << 20, repeat: int = 5) -> float:
    """Best-of MB/s of ``bytes(buffer)`` (allocate + copy), what a naive Python path pays."""
    src = bytearray(os.urandom(1 << 20)) * (size >> 20)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        b = bytes(src)
        best = min(best, time.perf_counter() - t0)
        del b
    return len(src) / best / MB


def file_io_speed(directory: Path, size: int = 256 << 20, chunk: int = 1 << 20
                  ) -> dict[str, float]:
    """MB/s of writing (with fsync) and reading back a ``size``-byte file in ``chunk`` pieces.

    ``read_cold`` drops the file from the page cache first (posix_fadvise DONTNEED), ``read_warm``
    reads it again from the cache."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f".io-probe-{os.getpid()}"
    block = os.urandom(chunk)
    n = max(1, size // chunk)
    try:
        t0 = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for _ in range(n):
                os.write(fd, block)
            os.fsync(fd)
        finally:
            os.close(fd)
        write = n * chunk / (time.perf_counter() - t0) / MB
        speeds = {"write_fsync": write}
        buf = bytearray(chunk)
        for name in ("read_cold", "read_warm"):
            fd = os.open(path, os.O_RDONLY)
            try:
                if name == "read_cold":
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                t0 = time.perf_counter()
                total = 0
                while got := os.readv(fd, [buf]):
                    total += got
                speeds[name] = total / (time.perf_counter() - t0) / MB
            finally:
                os.close(fd)
        return speeds
    finally:
        path.unlink(missing_ok=True)


def measure_limits(directory: Path, *, smoke: bool) -> dict[str, object]:
    """Every limit, as one JSON-able dict (MB/s)."""
    secs = 1 if smoke else 3
    size = (16 if smoke else 64) << 20
    return {
        "openssl": openssl_version(),
        "aes_128_ctr_1thread": openssl_speed("aes-128-ctr", secs),
        "aes_128_cbc_1thread": openssl_speed("aes-128-cbc", secs),
        "memcpy_64MB": memcpy_speed(size),
        "bytes_copy_64MB": bytes_copy_speed(size),
        "file_io": file_io_speed(directory, size=(16 if smoke else 256) << 20),
    }
