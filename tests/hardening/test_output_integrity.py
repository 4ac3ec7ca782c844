"""Output integrity of encrypt-vod: SIGKILL / SIGINT mid-run, a full disk, and an input that is
never modified.

After SIGINT nothing is left (no DIR, or the earlier DIR intact, temp folder removed). After
SIGKILL no cleanup code can run: only a hidden ``.DIR.<pid>.<random>.partial`` may remain, and
the next run for the same DIR removes it (its process is gone). A full disk is simulated with
RLIMIT_FSIZE in the child (SIGXFSZ ignored, so writes fail with EFBIG).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from speke_packager._tools import find_tool
from speke_packager.keyserver import KeyServer

from .conftest import KEY, KID_HEX, ROOT, cli

pytestmark = pytest.mark.timeout(300)

KEYSPEC = f"{KID_HEX}:{KEY.hex()}"


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 (or 'fifo'/'dir') of everything under ``root``."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_fifo():
            out[rel] = "fifo"
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def clear_hls(media: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clear HLS TS package cut by ffmpeg (stream copy) from a real H.264/AAC TS."""
    src = media("h264-aac-ts")
    d = tmp_path_factory.mktemp("clear-hls")
    ffmpeg = find_tool("ffmpeg")
    assert ffmpeg
    subprocess.run([ffmpeg, "-v", "error", "-i", str(src), "-c", "copy", "-f", "hls",
                    "-hls_time", "1", "-hls_list_size", "0", "-hls_playlist_type", "vod",
                    "-hls_segment_filename", str(d / "seg_%03d.ts"), str(d / "index.m3u8")],
                   check=True, capture_output=True)
    segs = sorted(d.glob("seg_*.ts"))
    assert len(segs) >= 2
    return d / "index.m3u8"


def _copy_pkg(clear_hls: Path, dst: Path, *, fifo: bool) -> tuple[Path, Path | None]:
    shutil.copytree(clear_hls.parent, dst)
    if not fifo:
        return dst / clear_hls.name, None
    pipe = dst / "seg_001.ts"
    pipe.unlink()
    os.mkfifo(pipe)
    return dst / clear_hls.name, pipe


def _encrypt_args(manifest: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "speke_packager", "encrypt-vod", str(manifest), "-o", str(out),
            "--scheme", "aes-128", "--key", KEYSPEC, "--key-uri", "https://keys.example/k",
            "--jobs", "1", *extra]


def _wait_for_reader(proc: subprocess.Popen[bytes], pipe: Path) -> int:
    """Block until the run opened the pipe for reading (it is mid-encryption); returns our fd."""
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached the piped segment"
        try:
            return os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            time.sleep(0.02)


def _hidden_partials(parent: Path, name: str) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(f".{name}.")
            and p.name.endswith(".partial")]


def _visible(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if not p.name.startswith("."))


def _kill_mid_run(manifest: Path, pipe: Path, out: Path, sig: int, *extra: str
                  ) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.Popen(_encrypt_args(manifest, out, *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    fd = _wait_for_reader(proc, pipe)
    try:
        assert _hidden_partials(out.parent, out.name), "no temporary folder while running"
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait(30)
    finally:
        os.close(fd)  # a still-living reader sees EOF
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _check_aes128_package(out: Path, clear: Path) -> None:
    """Independent check: openssl decrypts every segment back to the clear bytes."""
    openssl = shutil.which("openssl")
    assert openssl
    text = (out / "index.m3u8").read_text()
    m = re.search(r"IV=0[xX]([0-9a-fA-F]{32})", text)
    seq = int((re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text) or ["", "0"])[1])
    segs = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert segs
    for i, name in enumerate(segs):
        iv = m.group(1) if m else f"{seq + i:032x}"
        plain = subprocess.run([openssl, "enc", "-d", "-aes-128-cbc", "-K", KEY.hex(), "-iv", iv,
                                "-in", str(out / name)], capture_output=True, check=True).stdout
        assert plain == (clear / name).read_bytes(), name
        wrong = subprocess.run([openssl, "enc", "-d", "-aes-128-cbc", "-K", bytes(16).hex(),
                                "-iv", iv, "-in", str(out / name)], capture_output=True,
                               check=False)
        assert wrong.returncode != 0 or wrong.stdout != plain  # negative control


# ---- SIGKILL ----------------------------------------------------------------------------------
def test_sigkill_leaves_only_a_hidden_partial_and_the_next_run_cleans_it(
        clear_hls: Path, tmp_path: Path) -> None:
    manifest, pipe = _copy_pkg(clear_hls, tmp_path / "pkg", fifo=True)
    assert pipe is not None
    out = tmp_path / "out"
    res = _kill_mid_run(manifest, pipe, out, signal.SIGKILL)
    assert res.returncode == -signal.SIGKILL
    assert not out.exists()
    stale = _hidden_partials(tmp_path, "out")
    assert len(stale) == 1
    assert _visible(tmp_path) == ["pkg"]
    # the next run (real segment back in place) succeeds and removes the dead run's folder
    pipe.unlink()
    shutil.copy(clear_hls.parent / "seg_001.ts", pipe)
    before = tree_digest(tmp_path / "pkg")
    ok = subprocess.run(_encrypt_args(manifest, out), capture_output=True, text=True, cwd=ROOT,
                        env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=240, check=False)
    assert ok.returncode == 0, ok.stderr[-1500:]
    assert not stale[0].exists(), "the stale partial folder of the killed run is still there"
    assert not _hidden_partials(tmp_path, "out")
    assert tree_digest(tmp_path / "pkg") == before
    _check_aes128_package(out, tmp_path / "pkg")


def test_sigkill_keeps_the_earlier_output(clear_hls: Path, tmp_path: Path) -> None:
    manifest, pipe = _copy_pkg(clear_hls, tmp_path / "pkg", fifo=True)
    assert pipe is not None
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("earlier run")
    earlier = tree_digest(out)
    res = _kill_mid_run(manifest, pipe, out, signal.SIGKILL, "--force")
    assert res.returncode == -signal.SIGKILL
    assert tree_digest(out) == earlier
    assert _visible(tmp_path) == ["out", "pkg"]


def test_stale_partial_of_a_live_process_is_left_alone(clear_hls: Path, tmp_path: Path) -> None:
    """Control for the cleanup: a folder named for a process that still runs is not touched."""
    manifest, _ = _copy_pkg(clear_hls, tmp_path / "pkg", fifo=False)
    live = tmp_path / f".out.{os.getpid()}.abcdef.partial"
    live.mkdir()
    dead = tmp_path / ".out.999999999.abcdef.partial"
    dead.mkdir()
    ok = subprocess.run(_encrypt_args(manifest, tmp_path / "out"), capture_output=True,
                        text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                        timeout=240, check=False)
    assert ok.returncode == 0, ok.stderr[-1500:]
    assert live.exists() and not dead.exists()


# ---- SIGINT -----------------------------------------------------------------------------------
def test_sigint_mid_encryption_cleans_up(clear_hls: Path, tmp_path: Path) -> None:
    manifest, pipe = _copy_pkg(clear_hls, tmp_path / "pkg", fifo=True)
    assert pipe is not None
    out = tmp_path / "out"
    res = _kill_mid_run(manifest, pipe, out, signal.SIGINT)
    assert res.returncode == 130, res.stderr[-800:]
    assert b"interrupted" in res.stderr and b"Traceback" not in res.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_sigint_while_waiting_for_the_key_server(clear_hls: Path, tmp_path: Path) -> None:
    manifest, _ = _copy_pkg(clear_hls, tmp_path / "pkg", fifo=False)
    before = tree_digest(tmp_path / "pkg")
    out = tmp_path / "out"
    with KeyServer(allow_fault_header=True, seed="integrity", faults=["delay=60"]) as ks:
        proc = subprocess.Popen(
            [sys.executable, "-m", "speke_packager", "encrypt-vod", str(manifest), "-o", str(out),
             "--speke-url", ks.speke_url, "--content-id", "int-1", "--drm", "aes-128",
             "--scheme", "aes-128", "--timeout", "5,90"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)))
        deadline = time.monotonic() + 60
        while ks.request_count("/speke") == 0:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-800:]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    assert tree_digest(tmp_path / "pkg") == before


# ---- full disk --------------------------------------------------------------------------------
def _fsize_cap(limit: int) -> Callable[[], None]:
    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return cap


def _run_capped(args: Sequence[str], limit: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=ROOT, timeout=240,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), check=False,
                          preexec_fn=_fsize_cap(limit))


def test_full_disk_is_a_clear_error(clear_hls: Path, tmp_path: Path) -> None:
    manifest, _ = _copy_pkg(clear_hls, tmp_path / "pkg", fifo=False)
    before = tree_digest(tmp_path / "pkg")
    biggest = max(p.stat().st_size for p in (tmp_path / "pkg").glob("seg_*.ts"))
    out = tmp_path / "out"
    res = _run_capped(_encrypt_args(manifest, out), biggest // 2)
    assert res.returncode == 6, (res.returncode, res.stderr[-1500:])  # OutputError
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("speke-packager: error:")]
    assert len(lines) == 1 and re.search(r"too large|no space|cannot write", lines[0], re.I), \
        res.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    assert tree_digest(tmp_path / "pkg") == before


def test_full_disk_control_without_cap(clear_hls: Path, tmp_path: Path) -> None:
    """Control: the same run with a generous cap succeeds (the cap, not the input, failed it)."""
    manifest, _ = _copy_pkg(clear_hls, tmp_path / "pkg", fifo=False)
    res = _run_capped(_encrypt_args(manifest, tmp_path / "out"), 64 << 20)
    assert res.returncode == 0, res.stderr[-1500:]
    _check_aes128_package(tmp_path / "out", tmp_path / "pkg")


def test_full_disk_keeps_the_earlier_output(clear_hls: Path, tmp_path: Path) -> None:
    manifest, _ = _copy_pkg(clear_hls, tmp_path / "pkg", fifo=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("earlier run")
    earlier = tree_digest(out)
    biggest = max(p.stat().st_size for p in (tmp_path / "pkg").glob("seg_*.ts"))
    res = _run_capped(_encrypt_args(manifest, out, "--force"), biggest // 2)
    assert res.returncode == 6, res.stderr[-1500:]
    assert tree_digest(out) == earlier


# ---- the input is never modified --------------------------------------------------------------
@pytest.mark.parametrize("fmt,scheme", [("hls", "aes-128"), ("hls", "sample-aes")])
def test_input_untouched_by_successful_runs(clear_hls: Path, tmp_path: Path, fmt: str,
                                            scheme: str) -> None:
    manifest, _ = _copy_pkg(clear_hls, tmp_path / "pkg", fifo=False)
    before = tree_digest(tmp_path / "pkg")
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "pkg").iterdir()}
    res = cli("encrypt-vod", str(manifest), "-o", str(tmp_path / "out"), "--format", fmt,
              "--scheme", scheme, "--key", KEYSPEC, "--key-uri", "https://keys.example/k")
    assert res.returncode == 0, res.stderr[-1500:]
    assert tree_digest(tmp_path / "pkg") == before
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "pkg").iterdir()} == mtimes


def test_output_onto_the_input_folder_is_refused(clear_hls: Path, tmp_path: Path) -> None:
    """``-o`` naming the input's own folder (even with --force) must not replace the input."""
    manifest, _ = _copy_pkg(clear_hls, tmp_path / "pkg", fifo=False)
    before = tree_digest(tmp_path / "pkg")
    res = cli("encrypt-vod", str(manifest), "-o", str(tmp_path / "pkg"), "--scheme", "aes-128",
              "--key", KEYSPEC, "--key-uri", "https://keys.example/k", "--force")
    assert res.returncode != 0
    assert tree_digest(tmp_path / "pkg") == before, res.stderr[-800:]
