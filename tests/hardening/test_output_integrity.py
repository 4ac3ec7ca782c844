"""Output integrity of encrypt-vod: SIGKILL / SIGINT mid-run, a full disk, and an input that is
never modified.

After SIGINT nothing is left (no DIR, or the earlier DIR intact, temp folder removed). After
SIGKILL no cleanup code can run: only a hidden ``.DIR.<pid>.<random>.partial`` may remain, and
the next run for the same DIR removes it (its process is gone). A full disk is simulated with
RLIMIT_FSIZE in the child (SIGXFSZ ignored, so writes fail with EFBIG).
"""

from __future__ import annotations

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


def _copy_pkg(clear_hls: Path, dst: Path, *, long: bool) -> Path:
    """A copy of the clear package; with ``long``, its playlist lists 600 segments (symbolic
    links to one segment, inside the package, so they are allowed): the run takes long enough to
    be signalled while it writes segments. Returns the playlist to encrypt."""
    shutil.copytree(clear_hls.parent, dst)
    if not long:
        return dst / clear_hls.name
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for i in range(600):
        (dst / f"long_{i:04d}.ts").symlink_to("seg_001.ts")
        lines += ["#EXTINF:1.0,", f"long_{i:04d}.ts"]
    (dst / "long.m3u8").write_text("\n".join([*lines, "#EXT-X-ENDLIST", ""]))
    return dst / "long.m3u8"


def _encrypt_args(manifest: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "speke_packager", "encrypt-vod", str(manifest), "-o", str(out),
            "--scheme", "aes-128", "--key", KEYSPEC, "--key-uri", "https://keys.example/k",
            "--jobs", "1", *extra]


def _wait_for_a_segment(proc: subprocess.Popen[bytes], out: Path) -> None:
    """Block until the run wrote its first encrypted segment (it is mid-encryption)."""
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never wrote a segment"
        if any(any(p.glob("long_*.ts")) for p in _hidden_partials(out.parent, out.name)):
            return
        time.sleep(0.01)


def _hidden_partials(parent: Path, name: str) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(f".{name}.")
            and p.name.endswith(".partial")]


def _visible(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if not p.name.startswith("."))


def _kill_mid_run(manifest: Path, out: Path, sig: int, *extra: str
                  ) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.Popen(_encrypt_args(manifest, out, *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        _wait_for_a_segment(proc, out)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
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
    manifest = _copy_pkg(clear_hls, tmp_path / "pkg", long=True)
    out = tmp_path / "out"
    res = _kill_mid_run(manifest, out, signal.SIGKILL)
    assert res.returncode == -signal.SIGKILL
    assert not out.exists()
    stale = _hidden_partials(tmp_path, "out")
    assert len(stale) == 1
    assert _visible(tmp_path) == ["pkg"]
    # the next run (the short playlist of the same package) succeeds and removes the dead
    # run's folder
    manifest = manifest.with_name(clear_hls.name)
    before = tree_digest(tmp_path / "pkg")
    ok = subprocess.run(_encrypt_args(manifest, out), capture_output=True, text=True, cwd=ROOT,
                        env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=240, check=False)
    assert ok.returncode == 0, ok.stderr[-1500:]
    assert not stale[0].exists(), "the stale partial folder of the killed run is still there"
    assert not _hidden_partials(tmp_path, "out")
    assert tree_digest(tmp_path / "pkg") == before
    _check_aes128_package(out, tmp_path / "pkg")


def test_sigkill_keeps_the_earlier_output(clear_hls: Path, tmp_path: Path) -> None:
    manifest = _copy_pkg(clear_hls, tmp_path / "pkg", long=True)
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("earlier run")
    earlier = tree_digest(out)
    res = _kill_mid_run(manifest, out, signal.SIGKILL, "--force")
    assert res.returncode == -signal.SIGKILL
    assert tree_digest(out) == earlier
    assert _visible(tmp_path) == ["out", "pkg"]


def test_stale_partial_of_a_live_process_is_left_alone(clear_hls: Path, tmp_path: Path) -> None:
    """Control for the cleanup: a folder named for a process that still runs is not touched."""
    manifest = _copy_pkg(clear_hls, tmp_path / "pkg", long=False)
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
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                       (signal.SIGHUP, 129)])
def test_signal_mid_encryption_cleans_up(clear_hls: Path, tmp_path: Path, sig: int,
                                         code: int) -> None:
    manifest = _copy_pkg(clear_hls, tmp_path / "pkg", long=True)
    out = tmp_path / "out"
    res = _kill_mid_run(manifest, out, sig)
    assert res.returncode == code, res.stderr[-800:]
    assert (b"interrupted" in res.stderr or b"terminated" in res.stderr)
    assert b"Traceback" not in res.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_sigint_while_waiting_for_the_key_server(clear_hls: Path, tmp_path: Path) -> None:
    manifest = _copy_pkg(clear_hls, tmp_path / "pkg", long=False)
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
    manifest = _copy_pkg(clear_hls, tmp_path / "pkg", long=False)
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
    manifest = _copy_pkg(clear_hls, tmp_path / "pkg", long=False)
    res = _run_capped(_encrypt_args(manifest, tmp_path / "out"), 64 << 20)
    assert res.returncode == 0, res.stderr[-1500:]
    _check_aes128_package(tmp_path / "out", tmp_path / "pkg")


def test_full_disk_keeps_the_earlier_output(clear_hls: Path, tmp_path: Path) -> None:
    manifest = _copy_pkg(clear_hls, tmp_path / "pkg", long=False)
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
    manifest = _copy_pkg(clear_hls, tmp_path / "pkg", long=False)
    before = tree_digest(tmp_path / "pkg")
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "pkg").iterdir()}
    res = cli("encrypt-vod", str(manifest), "-o", str(tmp_path / "out"), "--format", fmt,
              "--scheme", scheme, "--key", KEYSPEC, "--key-uri", "https://keys.example/k")
    assert res.returncode == 0, res.stderr[-1500:]
    assert tree_digest(tmp_path / "pkg") == before
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "pkg").iterdir()} == mtimes


def test_output_onto_the_input_folder_is_refused(clear_hls: Path, tmp_path: Path) -> None:
    """``-o`` naming the input's own folder (even with --force) must not replace the input."""
    manifest = _copy_pkg(clear_hls, tmp_path / "pkg", long=False)
    before = tree_digest(tmp_path / "pkg")
    res = cli("encrypt-vod", str(manifest), "-o", str(tmp_path / "pkg"), "--scheme", "aes-128",
              "--key", KEYSPEC, "--key-uri", "https://keys.example/k", "--force")
    assert res.returncode != 0
    assert tree_digest(tmp_path / "pkg") == before, res.stderr[-800:]
