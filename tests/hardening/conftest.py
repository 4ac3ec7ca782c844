"""Shared pieces of the hardening suite: seed inputs made at test time, mutations, the corpus.

Seeds are real media made by ffmpeg (the ``media`` fixture), the shared CPIX samples and small
hand-written manifests. Hypothesis mutates them; ``corpus/<target>/`` holds committed inputs
that once were interesting (crafted edge cases) and are replayed on every run.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from fixtures.media import make_asset
from speke_packager.errors import SpekePackagerError
from speke_packager.media.mp4.boxes import iter_boxes
from tests.conftest import MEDIA_DIR

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
ROOT = HERE.parent.parent

# Small budgets: the suite must stay fast on a shared 2-core machine.
# Reproducible by default: derandomize=True derives each test's examples from its name, so
# every run (and every report) covers the same cases. SPEKE_FUZZ_EXPLORE=1 draws fresh random
# examples instead (combine with pytest --hypothesis-seed=N to replay a run);
# SPEKE_FUZZ_EXAMPLES raises the budget for a longer pass.
FUZZ_EXAMPLES = int(os.environ.get("SPEKE_FUZZ_EXAMPLES", "150"))
FUZZ_DERANDOMIZE = not os.environ.get("SPEKE_FUZZ_EXPLORE")
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                derandomize=FUZZ_DERANDOMIZE,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
# Per case: a parser call on inputs of at most a few MiB must end within CASE_SECONDS, and the
# fuzz modules run with an address-space limit CASE_MEMORY above the process's size at their
# start (a parser that believes a length field raises MemoryError: not a typed error, a fail).
CASE_SECONDS = 10.0
CASE_MEMORY = 1 << 30

# Content keys used by these tests (their spellings are searched for in outputs).
KEY = bytes.fromhex("6b3f0a9e51c2d47788a1b2c3d4e5f601")
KID_HEX = "5a1c9e3b7d2f4a6880aabbccddeeff01"


def corpus(target: str) -> list[Path]:
    """Committed corpus files of one target, sorted (replayed by every run)."""
    d = CORPUS / target
    return sorted(p for p in d.iterdir() if p.is_file()) if d.is_dir() else []


def typed_only(fn: Callable[[], object]) -> None:
    """Run ``fn``; success and our typed errors pass, any other exception fails the test, and
    so does a call slower than :data:`CASE_SECONDS`."""
    t0 = time.monotonic()
    try:
        fn()
    except SpekePackagerError:
        pass
    took = time.monotonic() - t0
    assert took < CASE_SECONDS, f"one case took {took:.1f}s"


def _vm_size() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@contextlib.contextmanager
def memory_bound(extra: int = CASE_MEMORY) -> Iterator[None]:
    """RLIMIT_AS at the current address-space size + ``extra`` while the block runs (Linux)."""
    import resource

    size = _vm_size()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if size is None:
        yield
        return
    limit = size + extra if hard == resource.RLIM_INFINITY else min(hard, size + extra)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# ---- mutations ---------------------------------------------------------------------------------
_MAGIC = (b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x00\x00\x00\x01", b"\x7f\xff\xff\xff",
          b"\x00\x00\x00\x08", b"\x00\x00\x01", b"\x47", b"\x00\x00\x03")


@dataclass(frozen=True)
class Mutation:
    op: int
    at: int
    blob: bytes


def apply(data: bytes, muts: Sequence[Mutation]) -> bytes:
    """Apply mutations (flip, delete, insert, magic overwrite, truncate, duplicate a slice)."""
    d = bytearray(data)
    for m in muts:
        if not d:
            d = bytearray(m.blob or b"\x00")
            continue
        i = m.at % len(d)
        if m.op == 0:
            d[i] ^= (m.blob[0] if m.blob else 0xFF) or 1
        elif m.op == 1:
            del d[i:i + 1 + len(m.blob) * 4]
        elif m.op == 2:
            d[i:i] = m.blob
        elif m.op == 3:
            magic = _MAGIC[(m.blob[0] if m.blob else 0) % len(_MAGIC)]
            d[i:i + len(magic)] = magic
        elif m.op == 4:
            del d[i:]
        else:
            n = 1 + len(m.blob) * 16
            d[i:i] = d[i:i + n]
    return bytes(d)


mutations = st.lists(
    st.builds(Mutation, st.integers(0, 5), st.integers(0, 1 << 24), st.binary(max_size=12)),
    min_size=1, max_size=8)


def text_mutations(seeds: Sequence[str]) -> st.SearchStrategy[str]:
    """Line-aware text mutations of manifests (bytes mutations, then lenient decoding)."""
    return st.builds(lambda s, m: apply(s.encode(), m).decode("utf-8", "replace"),
                     st.sampled_from(list(seeds)), mutations)


# ---- media helpers -----------------------------------------------------------------------------
def split_fmp4(data: bytes) -> tuple[bytes, list[bytes]]:
    """(init = up to the end of moov, [moof+mdat, ...]) of a fragmented MP4 file."""
    boxes = list(iter_boxes(data))
    moov = next(b for b in boxes if b.type == b"moov")
    segs: list[bytes] = []
    start: int | None = None
    for b in boxes:
        if b.type == b"moof":
            start = b.start
        elif b.type == b"mdat" and start is not None:
            segs.append(data[start:b.end])
            start = None
    return data[:moov.end], segs


def box(fourcc: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + fourcc + payload


def avcc_of(init: bytes, tag: bytes) -> bytes:
    """Payload of the first avcC/hvcC box in an init segment (found by scanning)."""
    p = init.find(tag)
    assert p >= 4, f"no {tag!r} in the init"
    size = struct.unpack(">I", init[p - 4:p])[0]
    return init[p + 4:p - 4 + size]


def annexb_nals(es: bytes) -> Iterator[bytes]:
    for part in re.split(b"\x00\x00\x01", es):
        part = part.rstrip(b"\x00")
        if part:
            yield part


# ---- subprocesses ------------------------------------------------------------------------------
def run_py(code: str, *, timeout: float = 120, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    """Run Python code in a child with the project on sys.path."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=full_env, check=False, cwd=ROOT)


def cli(*args: str, timeout: float = 300, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "speke_packager", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, check=False, cwd=cwd or ROOT)


# Seeds are loaded by cached functions, not fixtures: hypothesis prints a failing example's
# arguments, and megabytes of fixture bytes in that report help nobody.
@functools.cache
def fmp4_seeds() -> dict[str, tuple[bytes, list[bytes]]]:
    """name -> (init, segments) of small ffmpeg-made fragmented MP4 files."""
    out = {}
    for name in ("h264-fmp4", "hevc-fmp4", "h264-aac-fmp4", "vp9-opus-fmp4"):
        out[name] = split_fmp4(make_asset(name, MEDIA_DIR).read_bytes())
    return out


@functools.cache
def ts_seeds() -> list[bytes]:
    """Whole short ffmpeg-made MPEG-TS files (H.264/HEVC video, AAC/AC-3 audio)."""
    return [make_asset(n, MEDIA_DIR).read_bytes() for n in ("h264-aac-ts", "hevc-ts", "h264-ac3-ts")]
