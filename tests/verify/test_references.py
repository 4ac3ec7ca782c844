"""`verify --reference` takes every clear input `encrypt-vod` takes: a media file, a clear HLS
package (TS, fMP4, byte ranges, multivariant) and a clear DASH package ($Number$, $Time$,
SegmentList with and without byte ranges, SegmentBase). Packages made by FFmpeg / Shaka
Packager at test time, encrypted by encrypt-vod, decrypted by FFmpeg 8 (whose static build has
no DASH demuxer: the reference tracks are rebuilt from the manifest)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from speke_packager._tools import find_tool
from speke_packager.cli import main as cli_main
from speke_packager.errors import ManifestError, VerificationError
from speke_packager.verify import verify_package
from tests.e2e.packages import KEY, KEY_URI, KEYS, KID, WRONG_KEYS
from tests.vod.conftest import make_package

KEYSPEC = f"{KID.hex}:{KEY.hex()}"
# clear package kind -> the scheme encrypt-vod uses on it
CASES = {
    "hls-ts": "aes-128",
    "hls-ts-byterange": "sample-aes",
    "hls-fmp4": "cbcs",
    "hls-fmp4-byterange": "cenc",
    "hls-multivariant-ts": "sample-aes",
    "dash-number": "cenc",
    "dash-time": "cbcs",
    "dash-list": "cenc",
    "dash-list-ranges": "cbcs",
    "dash-base": "cenc",
}


@pytest.fixture(scope="module")
def clear(media: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
          ) -> Callable[[str], Path]:
    """``clear(kind)`` -> the manifest of a clear package of ``kind`` (made once per module)."""
    root = tmp_path_factory.mktemp("clear-refs")
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in made:
            src = media("h264-aac-ts" if "ts" in kind.split("-") else "h264-aac-mp4")
            made[kind] = make_package(kind, src, root / kind)
        return made[kind]

    return get


@pytest.fixture(scope="module")
def encrypted(clear: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
              ) -> Callable[[str], Path]:
    """``encrypted(kind)`` -> encrypt-vod's output folder for the clear package ``kind``."""
    root = tmp_path_factory.mktemp("enc-refs")
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in made:
            out = root / kind
            key_uri = ["--key-uri", KEY_URI] if kind.startswith("hls") else []
            assert cli_main(["encrypt-vod", str(clear(kind)), "--output", str(out),
                             "--scheme", CASES[kind], "--key", KEYSPEC, *key_uri, "--quiet",
                             "--jobs", "1"]) == 0
            made[kind] = out
        return made[kind]

    return get


def _frame_checks(report: object) -> list[object]:
    return [c for r in report.renditions for c in r.checks  # type: ignore[attr-defined]
            if c.name.startswith("frames")]


@pytest.mark.parametrize("kind", sorted(CASES))
def test_clear_package_as_reference(kind: str, clear: Callable[[str], Path],
                                    encrypted: Callable[[str], Path]) -> None:
    manifest = clear(kind)
    report = verify_package(encrypted(kind), manifest, keys=KEYS)
    assert report.ok, report.to_json()
    frames = _frame_checks(report)
    kinds = {c.name.split()[1][0] for c in frames}  # type: ignore[attr-defined]
    # every encrypted stream was decoded and matched a stream rebuilt from the clear manifest
    assert kinds == ({"v"} if kind in ("dash-time", "hls-fmp4-byterange") else {"v", "a"})
    for c in frames:
        assert "match reference " in c.detail and ":" in c.detail.rsplit("reference ", 1)[1]  # type: ignore[attr-defined]
    # the same package against the clear folder (every manifest in it) passes too
    assert verify_package(encrypted(kind), manifest.parent, keys=KEYS).ok
    # negative control: the right reference with a wrong key fails
    bad = verify_package(encrypted(kind), manifest, keys=WRONG_KEYS, fetch_key_uris=False)
    assert not bad.ok


def test_issue_case_clear_dash_manifest_through_the_cli(clear: Callable[[str], Path],
                                                        encrypted: Callable[[str], Path]) -> None:
    """The case of the issue: `verify OUT --reference clear-dash/manifest.mpd` with the static
    FFmpeg 8 (no DASH demuxer) failed with "Invalid data found when processing input"."""
    ffmpeg = find_tool("ffmpeg")
    assert ffmpeg
    demuxers = subprocess.run([ffmpeg, "-hide_banner", "-demuxers"], capture_output=True,
                              text=True, check=True).stdout.split("\n")
    has_dash = any(ln.split()[1:2] == ["dash"] for ln in demuxers if len(ln.split()) > 1)
    mpd = clear("dash-number")
    res = subprocess.run([sys.executable, "-m", "speke_packager", "verify",
                          str(encrypted("dash-number")), "--reference", str(mpd),
                          "--key", KEYSPEC], capture_output=True, text=True, timeout=600,
                         check=False)
    assert res.returncode == 0, (has_dash, res.stdout[-2000:], res.stderr[-2000:])
    assert "renditions OK" in res.stdout and "FAIL" not in res.stdout


def _other_content(tmp: Path) -> Path:
    """A clear MP4 like h264-aac-mp4 but with other pictures and another tone."""
    ffmpeg = find_tool("ffmpeg")
    assert ffmpeg
    out = tmp / "other.mp4"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc=size=320x180:rate=25:duration=6",
                    "-f", "lavfi", "-i", "sine=frequency=880:sample_rate=48000:duration=6",
                    "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "50",
                    "-keyint_min", "50", "-sc_threshold", "0", "-c:a", "aac", "-b:a", "96k",
                    str(out)], check=True)
    return out


@pytest.mark.parametrize("kind", ["dash-number", "hls-fmp4"])
def test_reference_of_other_content_fails_with_exit_8(kind: str, tmp_path: Path,
                                                      encrypted: Callable[[str], Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    other = make_package(kind, _other_content(tmp_path), tmp_path / "other-pkg")
    rc = cli_main(["verify", str(encrypted(kind)), "--reference", str(other),
                   "--key", KEYSPEC])
    err = capsys.readouterr().err
    assert rc == VerificationError.exit_code == 8, err
    assert "renditions failed" in err and "frames" in err


@pytest.mark.parametrize("kind", ["dash-list-ranges", "hls-ts-byterange"])
def test_tampered_reference_segment_fails(kind: str, tmp_path: Path,
                                          clear: Callable[[str], Path],
                                          encrypted: Callable[[str], Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """One changed byte range inside a single-file clear reference: its frames no longer
    match, so the byte ranges are really what is decoded."""
    import shutil

    src = clear(kind)
    ref = tmp_path / "ref"
    shutil.copytree(src.parent, ref)
    media = max((p for p in ref.iterdir() if p.suffix in (".mp4", ".ts")),
                key=lambda p: p.stat().st_size)
    data = bytearray(media.read_bytes())
    mid = len(data) // 2
    if media.suffix == ".ts":  # keep the 0x47 sync bytes: change payload bytes only
        mid -= mid % 188
        data[mid + 40:mid + 180] = bytes(140)
    else:
        data[mid:mid + 400] = bytes(400)
    media.write_bytes(bytes(data))
    rc = cli_main(["verify", str(encrypted(kind)), "--reference", str(ref / src.name),
                   "--key", KEYSPEC])
    err = capsys.readouterr().err
    assert rc == 8, err


def test_tampered_encrypted_segment_fails(tmp_path: Path, clear: Callable[[str], Path],
                                          encrypted: Callable[[str], Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    pkg = tmp_path / "pkg"
    shutil.copytree(encrypted("dash-number"), pkg)
    seg = sorted(pkg.glob("chunk-stream0-*.m4s"))[1]
    data = bytearray(seg.read_bytes())
    data[-600:-200] = bytes(400)  # inside the last samples of the mdat
    seg.write_bytes(bytes(data))
    rc = cli_main(["verify", str(pkg), "--reference", str(clear("dash-number")),
                   "--key", KEYSPEC])
    assert rc == 8, capsys.readouterr().err


def test_encrypted_reference_is_refused(encrypted: Callable[[str], Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    pkg = encrypted("dash-number")
    rc = cli_main(["verify", str(pkg), "--reference", str(pkg / "manifest.mpd"),
                   "--key", KEYSPEC])
    err = capsys.readouterr().err
    assert rc == ManifestError.exit_code, err
    assert "encrypted" in err and "clear" in err and err.count("\n") == 1


def test_media_file_reference_still_works(media: Callable[[str], Path],
                                          encrypted: Callable[[str], Path]) -> None:
    """A package made from a clear package verifies against the media file it came from too
    (the frames of an MP4 and of FFmpeg's DASH/HLS remux of it are the same)."""
    report = verify_package(encrypted("dash-list"), media("h264-aac-mp4"), keys=KEYS)
    assert report.ok, report.to_json()


@pytest.mark.parametrize("bad", ["fifo", "short"])
def test_bad_reference_segment_is_a_one_line_error(bad: str, tmp_path: Path,
                                                   clear: Callable[[str], Path],
                                                   encrypted: Callable[[str], Path]) -> None:
    """A FIFO segment in the reference (would block) and a byte range past the end of its file:
    one-line errors, exit 5, no hang."""
    import os
    import shutil

    kind = "dash-number" if bad == "fifo" else "dash-list-ranges"
    src = clear(kind)
    ref = tmp_path / "ref"
    shutil.copytree(src.parent, ref)
    if bad == "fifo":
        seg = sorted(ref.glob("chunk-stream0-*.m4s"))[1]
        seg.unlink()
        os.mkfifo(seg)
    else:
        single = ref / "manifest-stream0.mp4"
        single.write_bytes(single.read_bytes()[:-1000])
    res = subprocess.run([sys.executable, "-m", "speke_packager", "verify", str(encrypted(kind)),
                          "--reference", str(ref / src.name), "--key", KEYSPEC],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == ManifestError.exit_code, res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert ("not a regular file" if bad == "fifo" else "past the end") in res.stderr
