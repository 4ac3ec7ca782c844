"""``--key-file``: the ``--key`` values read from a file instead of the process list."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from speke_packager.errors import UsageError
from speke_packager.pipeline.rawkeys import read_key_file

from .conftest import IV, KEY, KEYSPEC, KID, cli, concat, frames

KEY2 = bytes.fromhex("11223344556677889900aabbccddeeff")
KID2 = uuid.UUID("ffeeddcc-bbaa-9988-7766-554433221100")


def _file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    p = tmp_path / "keys.txt"
    p.write_text(text)
    p.chmod(mode)
    return p


def test_lines_comments_and_labels(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = _file(tmp_path, f"# keys for asset 7\n\n  video={KEYSPEC}  # main\naudio={KID2.hex}:"
                        f"{KEY2.hex()}\n")
    with caplog.at_level(logging.WARNING):
        assert read_key_file(p) == [f"video={KEYSPEC}", f"audio={KID2.hex}:{KEY2.hex()}"]
    assert caplog.records == []  # 0600: no warning


def test_readable_by_others_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = _file(tmp_path, KEYSPEC + "\n", 0o644)
    with caplog.at_level(logging.WARNING):
        read_key_file(p)
    assert "chmod 600" in caplog.text
    assert KEY.hex() not in caplog.text


@pytest.mark.parametrize(("text", "why"), [
    ("# nothing\n\n", "holds no KID:KEY line"),
    (f"{KEYSPEC}\n{KID2.hex}:{KEY2.hex()[:-2]}\n", "line 2"),
    (f"tv={KEYSPEC}\n", "line 1: --key: unknown track label"),
    (f"{KID.hex}{KEY.hex()}\n", "line 1: --key expects KID:KEY"),
])
def test_bad_files_name_file_and_line_never_the_key(tmp_path: Path, text: str, why: str
                                                     ) -> None:
    p = _file(tmp_path, text)
    with pytest.raises(UsageError) as err:
        read_key_file(p)
    assert why in str(err.value) and str(p) in str(err.value)
    assert KEY.hex() not in str(err.value) and KEY2.hex()[:-2] not in str(err.value)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read key file"):
        read_key_file(tmp_path / "absent")
    p = tmp_path / "bin"
    p.write_bytes(b"\xff\xfe\x00" + KEY)
    with pytest.raises(UsageError, match="not UTF-8"):
        read_key_file(p)


def test_encrypt_vod_with_key_file_decrypts_with_that_key(media, tmp_path: Path) -> None:
    """The key from the file is the one used: FFmpeg decrypts with it to the clear frames, and
    not with another key; the key appears in no argument."""
    src = media("h264-aac-mp4")
    keys = _file(tmp_path, KEYSPEC + "\n")
    out = tmp_path / "out"
    r = cli("encrypt-vod", str(src), "--output", str(out), "--scheme", "cenc", "--format",
            "dash", "--key-file", str(keys), "--iv", IV.hex(), "--quiet")
    assert r.returncode == 0, r.stderr
    assert KEY.hex() not in r.stdout + r.stderr
    segs = sorted((out / "0").glob("segment_*.m4s"))
    assert segs
    track = concat(tmp_path / "video.mp4", [out / "0" / "init.mp4", *segs])
    clear = frames(src, "v:0")
    assert clear
    assert frames(track, "v:0", key=KEY) == clear
    assert frames(track, "v:0", key=KEY2) != clear  # negative control
    # verify takes the same file; a file with the wrong key fails it
    ok = cli("verify", str(out), "--reference", str(src), "--key-file", str(keys))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    bad = cli("verify", str(out), "--reference", str(src), "--key-file",
              str(_file(wrong, f"{KID.hex}:{KEY2.hex()}\n")))
    assert bad.returncode != 0


def test_key_and_key_file_conflicts(media, tmp_path: Path) -> None:
    keys = _file(tmp_path, KEYSPEC + "\n")
    r = cli("encrypt-vod", str(media("h264-aac-mp4")), "--output", str(tmp_path / "o"),
            "--key-file", str(keys), "--key", KEYSPEC, "--quiet")
    assert r.returncode != 0 and "more than one key" in r.stderr
    assert not (tmp_path / "o").exists()
    r = cli("encrypt-vod", str(media("h264-aac-mp4")), "--output", str(tmp_path / "o"),
            "--key-file", str(tmp_path / "nope"), "--quiet")
    assert r.returncode != 0 and "cannot read key file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_keyserver_serves_keys_from_the_file(tmp_path: Path) -> None:
    keys = _file(tmp_path, f"{KEYSPEC}\n# second\n{KID2.hex}:{KEY2.hex()}\n")
    proc = subprocess.Popen([sys.executable, "-m", "speke_packager", "keyserver", "--allow-fault-header", "--port", "0",
                             "--key-file", str(keys)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), proc.stderr.read() if proc.stderr else ""
        url = line.strip()[len("listening on "):]
        assert requests.get(f"{url}/keys/{KID.hex}", timeout=10).content == KEY
        assert requests.get(f"{url}/keys/{KID2.hex}", timeout=10).content == KEY2
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert KEY.hex() not in err and KEY2.hex() not in err


def test_raw_keys_signalled_as_clearkey(packages, tmp_path: Path) -> None:
    """``--drm clearkey`` with raw keys: HLS fMP4 gets a ClearKey EXT-X-KEY (data: URI of the
    KID, the IV), plus the identity tag only when --key-uri is given; DASH gets one ClearKey
    descriptor per AdaptationSet, with the licence URL."""
    import base64
    import re

    src = packages("hls-fmp4")
    out = tmp_path / "ck"
    r = cli("encrypt-vod", str(src), "--output", str(out), "--scheme", "cbcs", "--drm",
            "clearkey", "--key", KEYSPEC, "--iv", IV.hex(), "--quiet")
    assert r.returncode == 0, r.stderr
    text = (out / src.name).read_text()
    tags = [t for t in text.splitlines() if t.startswith("#EXT-X-KEY")]
    assert tags and all('KEYFORMAT="org.w3.clearkey"' in t for t in tags), tags
    uri = re.search(r'URI="data:text/plain;base64,([^"]+)"', tags[0])
    assert uri and base64.b64decode(uri.group(1)) == KID.bytes
    assert f"IV=0x{IV.hex().upper()}" in tags[0] and "METHOD=SAMPLE-AES" in tags[0]
    out2 = tmp_path / "both"
    r = cli("encrypt-vod", str(src), "--output", str(out2), "--scheme", "cbcs", "--drm",
            "clearkey", "--key-file", str(_file(tmp_path, KEYSPEC + "\n")), "--iv", IV.hex(),
            "--key-uri", "https://keys.example/{kid}", "--quiet")
    assert r.returncode == 0, r.stderr
    tags = [t for t in (out2 / src.name).read_text().splitlines()
            if t.startswith("#EXT-X-KEY")]
    formats = {m.group(1) for t in tags for m in [re.search(r'KEYFORMAT="([^"]+)"', t)] if m}
    assert formats == {"org.w3.clearkey", "identity"}, tags
    assert any(f'URI="https://keys.example/{KID.hex}"' in t for t in tags)
    dash = tmp_path / "dash"
    r = cli("encrypt-vod", str(packages("dash-number")), "--output", str(dash), "--scheme",
            "cenc", "--drm", "clearkey", "--key", KEYSPEC, "--clearkey-license-url",
            "https://lic.example/ck", "--quiet")
    assert r.returncode == 0, r.stderr
    mpd = (dash / "manifest.mpd").read_text()
    sets = mpd.count("<AdaptationSet")
    assert sets >= 1
    assert mpd.count("e2719d58-a985-b3c9-781a-b030af78d30e") == sets
    assert mpd.count("https://lic.example/ck") == sets
