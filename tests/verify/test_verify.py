"""`verify` on good packages, wrong keys and tampered signaling (real FFmpeg, real files)."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path
from uuid import UUID

import pytest

from speke_packager.cli import main as cli_main
from speke_packager.errors import VerificationError
from speke_packager.verify import verify_package
from tests.e2e.packages import KEY, KEYS, KID, WRONG_KEYS

NAMES = ["shaka-dash-cenc", "shaka-dash-cbcs", "shaka-hls-fmp4-cbcs", "shaka-hls-ts-sample-aes",
         "ffmpeg-hls-ts-aes128", "ours-dash-cenc", "ours-both-cbcs", "ours-hls-aes128",
         "ours-hls-sample-aes"]
OTHER_KID = UUID("ffeeddcc-bbaa-9988-7766-554433221100")


def _frames(report_rendition: object) -> list[object]:
    return [c for c in report_rendition.checks if c.name.startswith("frames")]  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", NAMES)
def test_good_package_passes(packages: dict[str, tuple[Path, Path]], name: str) -> None:
    pkg, ref = packages[name]
    report = verify_package(pkg, ref, keys=KEYS)
    assert report.ok, report.to_json()
    kinds = set()
    for r in report.renditions:
        if r.name == "hls:session-keys":
            continue
        frames = _frames(r)
        assert frames and all(c.ok for c in frames), r
        kinds.update(c.name.split()[1][0] for c in frames)
    assert kinds == {"v", "a"}  # both the video and the audio stream were decrypted and compared
    report.raise_for_failure()


@pytest.mark.parametrize("name", NAMES)
def test_wrong_key_fails_and_names_rendition(packages: dict[str, tuple[Path, Path]],
                                             name: str) -> None:
    pkg, ref = packages[name]
    report = verify_package(pkg, ref, keys=WRONG_KEYS, fetch_key_uris=False)
    assert not report.ok
    media = [r for r in report.renditions if r.name != "hls:session-keys"]
    assert media and all(not r.ok for r in media)
    for r in media:
        # frames do not match the clear input, or FFmpeg cannot even read the decrypted bytes
        assert any(not c.ok for c in r.checks if c.name.startswith(("frames", "decode"))), r
    with pytest.raises(VerificationError) as err:
        report.raise_for_failure()
    assert media[0].name in str(err.value)
    assert WRONG_KEYS[KID].hex() not in str(err.value)


def _copy(pkg: Path, tmp_path: Path) -> Path:
    dst = tmp_path / pkg.name
    shutil.copytree(pkg, dst)
    return dst


@pytest.mark.parametrize("name", ["shaka-dash-cenc", "ours-dash-cenc"])
def test_tampered_default_kid_in_mpd_fails(packages: dict[str, tuple[Path, Path]],
                                          tmp_path: Path, name: str) -> None:
    pkg, ref = packages[name]
    dst = _copy(pkg, tmp_path)
    mpd = dst / "manifest.mpd"
    text = mpd.read_text()
    assert str(KID) in text
    mpd.write_text(text.replace(str(KID), str(OTHER_KID), 1))  # only the first AdaptationSet
    report = verify_package(dst, ref, keys=KEYS)
    bad = report.failed()
    assert len(bad) == 1, report.to_json()
    failing = [c for c in bad[0].checks if not c.ok]
    assert [c.name for c in failing] == ["mpd default_KID"]
    assert str(OTHER_KID) in failing[0].detail
    with pytest.raises(VerificationError, match=re.escape(bad[0].name)):
        report.raise_for_failure()


def test_tampered_keyid_in_hls_fails(packages: dict[str, tuple[Path, Path]],
                                     tmp_path: Path) -> None:
    pkg, ref = packages["ours-both-cbcs"]
    dst = _copy(pkg, tmp_path)
    changed = 0
    for pl in dst.glob("*.m3u8"):
        text = pl.read_text()
        if "#EXT-X-KEY:" in text:
            pl.write_text(text.replace("#EXT-X-KEY:METHOD=SAMPLE-AES,",
                                       f"#EXT-X-KEY:METHOD=SAMPLE-AES,KEYID=0x{OTHER_KID.hex},",
                                       1))
            changed += 1
            break
    assert changed
    report = verify_package(dst, ref, keys=KEYS)
    bad = report.failed()
    assert len(bad) == 1 and bad[0].name.startswith("hls:"), report.to_json()
    detail = " ".join(c.detail for c in bad[0].checks if not c.ok)
    assert "KEYID" in detail and str(OTHER_KID) in detail


def test_malformed_ext_x_key_iv_fails(packages: dict[str, tuple[Path, Path]],
                                      tmp_path: Path) -> None:
    pkg, ref = packages["ffmpeg-hls-ts-aes128"]
    dst = _copy(pkg, tmp_path)
    pl = dst / "media.m3u8"
    pl.write_text(re.sub(r"IV=0x[0-9a-fA-F]{32}", "IV=0x1234", pl.read_text()))
    report = verify_package(dst, ref, keys=KEYS)
    assert not report.ok
    assert any("IV" in c.detail and not c.ok for r in report.renditions for c in r.checks)


def test_clearkey_licence_as_key_source(packages: dict[str, tuple[Path, Path]],
                                        keyserver: object) -> None:
    """Keys fetched from the local key server's W3C ClearKey licence endpoint, as a CDM would."""
    keyserver.register_key(KID, KEY)  # type: ignore[attr-defined]
    pkg, ref = packages["ours-dash-cenc"]
    report = verify_package(pkg, ref,
                            clearkey_license_url=keyserver.clearkey_license_url)  # type: ignore[attr-defined]
    assert report.ok, report.to_json()


def test_cli_exit_codes_and_no_key_in_output(packages: dict[str, tuple[Path, Path]],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    pkg, ref = packages["ours-both-cbcs"]
    rc = cli_main(["verify", str(pkg), "--reference", str(ref), "--key", f"{KID}:{KEY.hex()}",
                   "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    doc = json.loads(out.out)
    assert doc["ok"] and len(doc["renditions"]) >= 4
    rc = cli_main(["verify", str(pkg), "--reference", str(ref), "--key",
                   f"{KID.hex}:{WRONG_KEYS[KID].hex()}", "--no-fetch-key-uris"])
    bad = capsys.readouterr()
    assert rc == VerificationError.exit_code
    assert "FAIL" in bad.out and "renditions failed" in bad.err and "hls:" in bad.err
    for key in (KEY, WRONG_KEYS[KID]):
        forms = [key.hex(), key.hex().upper(), base64.b64encode(key).decode(),
                 base64.urlsafe_b64encode(key).decode().rstrip("=")]
        for text in (out.out, out.err, bad.out, bad.err):
            assert not any(f in text for f in forms)


def test_speke_options_as_key_source(tmp_path: Path, media: object, keyserver: object) -> None:
    """encrypt-vod and verify both get their keys from the local SPEKE server (multi-DRM)."""
    src = media("h264-aac-mp4")  # type: ignore[operator]
    out = tmp_path / "speke-pkg"
    speke = ["--speke-url", keyserver.speke_url, "--content-id", "verify-test",  # type: ignore[attr-defined]
             "--drm", "widevine,playready,clearkey"]
    assert cli_main(["encrypt-vod", str(src), "--output", str(out), "--scheme", "cenc",
                     "--format", "dash", "--segment-duration", "2", "--quiet", "--jobs", "1",
                     *speke]) == 0
    report = verify_package  # keep the library call visible for the reader
    assert report is not None
    assert cli_main(["verify", str(out), "--reference", str(src), *speke, "--json"]) == 0
    names = {c for c in (out / "manifest.mpd").read_text().split() if "urn:uuid" in c}
    assert any("9a04f079" in n for n in names) and any("edef8ba9" in n for n in names)
