"""A built wheel works on its own: installed into a fresh venv away from the source tree, its
``speke-packager demo`` runs end to end from a temp folder, with the schemas and player pages
it ships; the npm players are found through SPEKE_PACKAGER_NODE_MODULES or reported in one line.

The fresh venv gets the wheel (``pip --python VENV install --no-deps --no-index``) and, for the
dependencies, one ``.pth`` line naming this interpreter's site-packages: a plain path entry,
so the ``.pth`` files in there (the editable install's finder) are not run and
``import speke_packager`` can only resolve to the wheel.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from speke_packager.errors import ToolError
from speke_packager.verify.serve import NODE_MODULES_ENV, find_node_modules

ROOT = Path(__file__).resolve().parent.parent.parent
PKG = ROOT / "speke_packager"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _setuptools_ok() -> bool:
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return False
    return major >= 77


def _clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that would put the source tree on the path
    or name the players."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", NODE_MODULES_ENV)}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from a copy of the sources (no build/ or egg-info left in
    the tree) with the installed (locked) setuptools and no network."""
    if not _setuptools_ok():
        pytest.skip("setuptools >= 77 not installed in this venv (make setup installs it)")
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    shutil.copytree(PKG, src / "speke_packager",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    dist = base / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", str(src), "-w", str(dist)],
        capture_output=True, text=True, timeout=300, check=False, env=_clean_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = dist.glob("speke_packager-*.whl")
    return whl


@pytest.fixture(scope="module")
def wheel_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding the wheel; dependencies from this interpreter's site-packages."""
    venv = tmp_path_factory.mktemp("wheel-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, env=_clean_env()).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_locked_deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
         "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300, check=False, env=_clean_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield venv


def test_wheel_ships_every_data_file(wheel: Path) -> None:
    """Schemas, player pages, py.typed: every non-Python file of the package is in the wheel."""
    names = set(zipfile.ZipFile(wheel).namelist())
    data = {p.relative_to(ROOT).as_posix() for p in PKG.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    assert data, "the package has no data files? (schemas, verify/static expected)"
    assert any(n.startswith("speke_packager/schemas/cpix/") and n.endswith(".xsd") for n in data)
    assert any(n.startswith("speke_packager/verify/static/") for n in data)
    assert sorted(data - names) == []
    assert "speke_packager/__init__.py" in names
    assert not any(n.startswith(("tests/", "fixtures/", "benchmarks/")) for n in names)


def test_wheel_imports_from_its_venv(wheel_venv: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [str(wheel_venv / "bin" / "python"), "-c",
         "import speke_packager, speke_packager.keys.cpix as c; print(speke_packager.__file__)"],
        capture_output=True, text=True, timeout=120, check=True, cwd=tmp_path,
        env=_clean_env()).stdout.strip()
    assert Path(out).is_relative_to(wheel_venv), out
    assert not Path(out).is_relative_to(ROOT)


def test_wheel_demo_runs_from_a_temp_folder(wheel_venv: Path, tmp_path: Path) -> None:
    """``speke-packager demo`` from the wheel: exit 0, HLS + DASH manifests, verified, and
    played by Shaka Player and hls.js when Chromium and the players are there."""
    try:
        players = find_node_modules()
    except ToolError as exc:
        if os.environ.get("CI"):
            raise  # make setup installs the players: missing means a broken set-up
        pytest.skip(str(exc))
    run = tmp_path / "run"
    run.mkdir()
    proc = subprocess.run(
        [str(wheel_venv / "bin" / "speke-packager"), "demo", "--seconds", "4", "--port", "0"],
        capture_output=True, text=True, timeout=800, check=False, cwd=run,
        env=_clean_env(**{NODE_MODULES_ENV: str(players)}))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    pkg = run / "demo-output"
    assert (pkg / "master.m3u8").is_file() and (pkg / "manifest.mpd").is_file(), out[-2000:]
    assert any(pkg.glob("*.m4s")) or any(pkg.rglob("*.m4s")), sorted(pkg.iterdir())
    assert "[5/6] verify" in proc.stdout
    if Path(os.environ.get("SPEKE_PACKAGER_CHROMIUM", "/usr/bin/chromium")).exists():
        assert "playback check skipped" not in proc.stdout, proc.stdout[-2000:]
        assert proc.stdout.count('"ok": true') == 2, proc.stdout[-3000:]


def test_wheel_without_players_says_so_in_one_line(wheel_venv: Path, tmp_path: Path) -> None:
    """No node_modules above the wheel or the cwd and no SPEKE_PACKAGER_NODE_MODULES:
    ``serve --check`` fails with one line naming the fix (exit 7); the demo's playback step
    is skipped with that same line (checked without running the whole demo again)."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "manifest.mpd").write_text("<MPD/>")
    proc = subprocess.run(
        [str(wheel_venv / "bin" / "speke-packager"), "serve", str(tmp_path / "pkg"),
         "--player", "shaka", "--check", "--port", "0"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
        env=_clean_env())
    assert proc.returncode == 7, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("speke-packager: error: "), proc.stderr
    assert NODE_MODULES_ENV in lines[0] and "npm" in lines[0]
    skip = subprocess.run(
        [str(wheel_venv / "bin" / "python"), "-c",
         "from speke_packager.cli.demo_cmd import _playback_missing as m; print(m())"],
        capture_output=True, text=True, timeout=120, check=True, cwd=tmp_path,
        env=_clean_env()).stdout.strip()
    if Path(os.environ.get("SPEKE_PACKAGER_CHROMIUM", "/usr/bin/chromium")).exists():
        assert NODE_MODULES_ENV in skip and "npm" in skip, skip
    assert skip != "None"
