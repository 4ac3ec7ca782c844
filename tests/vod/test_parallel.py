"""encrypt-vod on worker threads or processes: same bytes as one thread, the parts path equals
the joined path, errors cross the process boundary typed, nothing is left behind."""

from __future__ import annotations

import hashlib
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from speke_packager import crypto
from speke_packager.constants import Scheme
from speke_packager.errors import (
    KeyServerHTTPError,
    MediaError,
    Mp4FormatError,
    SpekePackagerError,
)
from speke_packager.pipeline import plan as plan_module
from speke_packager.pipeline.contexts import KeyChoice, Mp4Context
from speke_packager.pipeline.options import VodOptions
from speke_packager.pipeline.plan import PartsTransform, Piece, Plan, execute
from speke_packager.pipeline.rawkeys import raw_keyset
from speke_packager.pipeline.vod import encrypt_vod

from .conftest import IV, KEYSPEC, WRONG, frames, long_package, signal_mid_run


def _fixed_ivs() -> Callable[[int], bytes]:
    counter = itertools.count(1)
    return lambda n: hashlib.sha256(str(next(counter)).encode()).digest()[:n]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
@pytest.mark.parametrize(("kind", "scheme"), [
    ("dash-number", Scheme.CENC), ("hls-fmp4", Scheme.CBCS), ("hls-ts", Scheme.SAMPLE_AES),
    ("hls-ts-byterange", Scheme.AES_128), ("hls-fmp4-byterange", Scheme.CBCS),
    ("dash-list-ranges", Scheme.CENC),
])
def test_workers_write_the_same_bytes_as_one_thread(packages, tmp_path: Path, monkeypatch,
                                                    kind: str, scheme: Scheme,
                                                    processes: bool) -> None:
    # encrypt_vod lets execute() choose: threads when the cipher calls release the GIL
    monkeypatch.setattr(plan_module, "cipher_calls_release_gil", lambda: not processes)
    trees = []
    for jobs in (1, 2):
        out = tmp_path / f"j{jobs}"
        encrypt_vod(VodOptions(input=packages(kind), output=out, scheme=scheme, jobs=jobs,
                               key_uri="k.bin", iv_source=_fixed_ivs()),
                    raw_keyset([KEYSPEC], scheme))
        trees.append(_tree(out))
        assert not [p for p in out.rglob(".speke-pieces*")]  # scratch files are gone
    assert trees[0] == trees[1]
    assert len(trees[0]) >= 2  # a manifest and at least one media file


def test_process_output_decrypts_to_the_source_frames(packages, tmp_path: Path) -> None:
    src = packages("hls-ts-byterange")
    out = tmp_path / "out"
    encrypt_vod(VodOptions(input=src, output=out, scheme=Scheme.AES_128, jobs=2,
                           key_uri="k.bin", iv=IV), raw_keyset([KEYSPEC], Scheme.AES_128))
    key = bytes.fromhex(KEYSPEC.split(":")[1])
    (out / "k.bin").write_bytes(key)
    clear = frames(src, "v:0", hls=True)
    assert clear
    assert frames(out / "index.m3u8", "v:0", hls=True) == clear
    (out / "k.bin").write_bytes(WRONG)  # negative control
    assert frames(out / "index.m3u8", "v:0", hls=True) != clear


@pytest.mark.parametrize("scheme", [Scheme.CENC, Scheme.CBCS, Scheme.AES_128])
def test_parts_path_equals_joined_path(packages, scheme: Scheme) -> None:
    root = packages("hls-fmp4").parent
    choice = KeyChoice(keyset=raw_keyset([KEYSPEC], scheme), scheme=scheme, explicit_iv=IV,
                       iv_source=_fixed_ivs())
    ctx = Mp4Context((root / "init.mp4").read_bytes(), choice, what="init.mp4")
    segs = sorted(root.glob("seg_*.m4s"))
    assert segs
    for i, seg in enumerate(segs[:3]):
        data = seg.read_bytes()
        t = ctx.segment_transform(i, clear=False)
        assert isinstance(t, PartsTransform)
        buf = bytearray(data)
        joined = b"".join(bytes(p) for p in t.parts(memoryview(buf)))
        assert joined == t(data)
        assert joined != data


# ---- execute() with plug-in transforms (module level: they run in forked workers) ---------

def _reverse_and_note(data: bytes) -> bytes:
    note = os.environ["SPEKE_TEST_PID_DIR"]
    Path(note, f"{os.getpid()}-{threading.get_ident()}").touch()
    return data[::-1] + b"!"


def _bad_box(data: bytes) -> bytes:
    raise Mp4FormatError("truncated moof", box_path="moof/traf")


def _unpicklable(data: bytes) -> bytes:
    err = KeyServerHTTPError("odd", status=500)
    err.hook = lambda: None  # type: ignore[attr-defined]  # a lambda does not pickle
    raise err


def _keyword_only(data: bytes) -> bytes:
    raise KeyServerHTTPError("teapot", status=418, request_id="r-1")


def _files(root: Path) -> None:
    (root / "a").mkdir(parents=True)
    for i in range(6):
        (root / "a" / f"s{i}.bin").write_bytes(bytes([i]) * (1000 + i))
    (root / "single.bin").write_bytes(bytes(range(256)) * 40)


def _plan(root: Path, transform: Callable[[bytes], bytes]) -> Plan:
    plan = Plan(root)
    for i in range(6):
        plan.add(Piece(f"a/s{i}.bin", None, None, transform, clear=False))
    plan.add(Piece("single.bin", 100, 1000, transform, clear=False))
    plan.add(Piece("single.bin", 3000, 500, None))
    plan.add(Piece("single.bin", 5000, 2000, transform, clear=False))
    return plan


@pytest.mark.parametrize(("jobs", "processes"), [(1, None), (2, True), (2, False)])
def test_execute_places_pieces_on_threads_or_processes(tmp_path: Path, monkeypatch, jobs: int,
                                                       processes: bool | None) -> None:
    src, out, pids = tmp_path / "in", tmp_path / "out", tmp_path / "pids"
    _files(src)
    out.mkdir()
    pids.mkdir()
    monkeypatch.setenv("SPEKE_TEST_PID_DIR", str(pids))
    plan = _plan(src, _reverse_and_note)
    execute(plan, out, jobs=jobs, processes=processes)
    for i in range(6):
        body = (src / "a" / f"s{i}.bin").read_bytes()
        assert (out / "a" / f"s{i}.bin").read_bytes() == body[::-1] + b"!"
    s = (src / "single.bin").read_bytes()
    want = (s[:100] + s[100:1100][::-1] + b"!" + s[1100:3000] + s[3000:3500] + s[3500:5000]
            + s[5000:7000][::-1] + b"!" + s[7000:])
    assert (out / "single.bin").read_bytes() == want
    assert plan.new_range("single.bin", 100, 1000) == (100, 1001)
    assert plan.new_range("single.bin", 3000, 500) == (3001, 500)
    assert plan.new_range("single.bin", 5000, 2000) == (5001, 2001)
    assert sorted(p.name for p in out.iterdir()) == ["a", "single.bin"]
    seen = {tuple(map(int, p.name.split("-"))) for p in pids.iterdir()}
    me = (os.getpid(), threading.get_ident())
    if jobs == 1:  # one worker thread of this process
        assert {pid for pid, _ in seen} == {os.getpid()} and len(seen) == 1
    elif processes:
        assert os.getpid() not in {pid for pid, _ in seen} and seen
    else:  # worker threads of this process
        assert {pid for pid, _ in seen} == {os.getpid()} and me not in seen


class _PythonHeavy:
    """A transform that declares its work holds the GIL (as SAMPLE-AES does)."""

    holds_gil = True

    def __call__(self, data: bytes) -> bytes:
        return _reverse_and_note(data)


@pytest.mark.parametrize("heavy", [False, True], ids=["cipher-bound", "holds-gil"])
def test_execute_picks_threads_unless_a_transform_holds_the_gil(tmp_path: Path, monkeypatch,
                                                                heavy: bool) -> None:
    """jobs=2 and no choice given: threads when the cipher library releases the GIL, worker
    processes for a plan with a transform that holds it (or on an older cipher library)."""
    src, out, pids = tmp_path / "in", tmp_path / "out", tmp_path / "pids"
    _files(src)
    out.mkdir()
    pids.mkdir()
    monkeypatch.setenv("SPEKE_TEST_PID_DIR", str(pids))
    execute(_plan(src, _PythonHeavy() if heavy else _reverse_and_note), out, jobs=2)
    seen = {int(p.name.split("-")[0]) for p in pids.iterdir()}
    if heavy or not crypto.cipher_calls_release_gil():
        assert seen and os.getpid() not in seen
    else:
        assert seen == {os.getpid()}
    s = (src / "single.bin").read_bytes()
    assert (out / "single.bin").read_bytes()[100:1101] == s[100:1100][::-1] + b"!"


@pytest.mark.parametrize("processes", [True, False], ids=["processes", "threads"])
@pytest.mark.parametrize(("transform", "error", "text"), [
    (_bad_box, Mp4FormatError, "truncated moof"),
    (_unpicklable, MediaError, "odd"),
])
def test_worker_errors_arrive_typed(tmp_path: Path, transform: Callable[[bytes], bytes],
                                    error: type[Exception], text: str, processes: bool) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    _files(src)
    out.mkdir()
    if not processes and transform is _unpicklable:
        error = KeyServerHTTPError  # (no process boundary: the error arrives as raised)
    with pytest.raises(error, match=text) as info:
        execute(_plan(src, transform), out, jobs=2, processes=processes)
    assert isinstance(info.value, MediaError if processes else SpekePackagerError)
    assert not [p for p in out.rglob(".speke-pieces*")]


def test_unpicklable_error_with_a_chain_pickling_reducer(tmp_path: Path) -> None:
    """Dask's workers install tblib's exception reducers, which pickle the __context__ chain:
    the MediaError that stands in for an unpicklable error must not drag that error along
    (it did: the pool broke with "Can't pickle local object")."""
    pytest.importorskip("tblib.pickling_support").install()
    src, out = tmp_path / "in", tmp_path / "out"
    _files(src)
    out.mkdir()
    with pytest.raises(MediaError, match="odd") as info:
        execute(_plan(src, _unpicklable), out, jobs=2, processes=True)
    assert not isinstance(info.value, KeyServerHTTPError)


@pytest.mark.parametrize("processes", [True, False], ids=["processes", "threads"])
def test_keyword_only_errors_cross_the_process_boundary(tmp_path: Path, processes: bool) -> None:
    """An error whose constructor takes keyword-only arguments arrives as itself, attributes
    and all (SpekePackagerError pickles its class and attributes)."""
    src, out = tmp_path / "in", tmp_path / "out"
    _files(src)
    out.mkdir()
    with pytest.raises(KeyServerHTTPError, match="teapot") as info:
        execute(_plan(src, _keyword_only), out, jobs=2, processes=processes)
    assert (info.value.status, info.value.request_id) == (418, "r-1")
    assert info.value.exit_code == KeyServerHTTPError.exit_code


def test_missing_segment_is_a_manifest_error_from_a_worker(tmp_path: Path) -> None:
    from speke_packager.errors import ManifestError

    src, out = tmp_path / "in", tmp_path / "out"
    _files(src)
    out.mkdir()
    plan = _plan(src, _bad_box)
    plan.add(Piece("a/gone.bin", None, None, None))
    (src / "a" / "s0.bin").unlink()
    with pytest.raises(ManifestError, match="missing"):
        execute(plan, out, jobs=2)


def test_cipher_calls_release_the_gil_when_the_library_says_so() -> None:
    """The premise of worker threads: on a release where :func:`cipher_calls_release_gil`
    holds, another thread keeps running while one long ``update_into`` encrypts."""
    if not crypto.cipher_calls_release_gil():
        pytest.skip("this cryptography release holds the GIL in update_into")
    src = bytes(32 << 20)
    out = bytearray(len(src) + 16)
    ctx = crypto.aes_cbc_encryptor(bytes(16), bytes(16))
    ticks = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            ticks[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.01)
        before = ticks[0]
        ctx.update_into(src, out)
        during = ticks[0] - before
    finally:
        stop.set()
        t.join()
    assert during > 1000, during  # a call holding the GIL would let the spinner do ~0 rounds


# ---- Ctrl-C with worker processes ------------------------------------------------------------

@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_with_worker_processes_leaves_no_output(packages, tmp_path: Path, sig: int,
                                                       code: int) -> None:
    """Ctrl-C or SIGTERM while two worker processes encrypt: the workers ignore it, the parent
    waits for them, removes the temporary folder and exits 128 + the signal."""
    manifest = long_package(packages, tmp_path / "pkg")
    out = tmp_path / "out"
    rc, err = signal_mid_run(["encrypt-vod", str(manifest), "-o", str(out), "--scheme",
                              "sample-aes", "--key", KEYSPEC, "--key-uri", "https://k/key",
                              "--jobs", "2"], out, sig)
    assert rc == code, err
    assert "Traceback" not in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # no partial folder left
