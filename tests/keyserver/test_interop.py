"""The whole chain with independent tools: Shaka Packager encrypts with the key and pssh boxes
from a SPEKE answer, FFmpeg 8 decrypts with the key served on ``/keys/{kid}``; decoded frames
equal the clear source, and a wrong key (fault ``wrong-kid``) does not."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from fixtures.media import framemd5, packager_key_flags
from speke_packager._tools import PACKAGER, find_tool
from speke_packager.keyserver import KeyServer

from . import _req
from ._check import check_answer

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
def test_speke_key_encrypts_and_key_url_decrypts(scheme: str, media: Callable[[str], Path],
                                                 tmp_path: Path) -> None:
    packager = find_tool("packager", PACKAGER)
    assert packager
    src = media("h264-fmp4")
    body = _req.v2_request(scheme=scheme, systems=(_req.WIDEVINE, _req.PLAYREADY),
                           kids=((_req.KID_V, "VIDEO"),))
    with KeyServer(allow_fault_header=True, seed="interop") as ks:
        r = requests.post(ks.speke_url, data=body, headers={"x-speke-version": "2.0"},
                          timeout=30)
        checked = check_answer(body, r.content)
        key = checked.keys[_req.KID_V]
        boxes = [checked.signals[(_req.KID_V, uuid.UUID(sid), "PSSH")]
                 for sid in (_req.WIDEVINE, _req.PLAYREADY)]
        served = requests.get(ks.key_url(_req.KID_V), timeout=10).content
        wrong = requests.get(ks.key_url(_req.KID_V), headers={"x-fault": "wrong-kid"},
                             timeout=10).content
    assert served == key and wrong != key and len(wrong) == 16
    out = tmp_path / "enc.mp4"
    subprocess.run(
        [packager, f"in={src},stream=video,output={out}", "--enable_raw_key_encryption",
         "--protection_scheme", scheme,
         packager_key_flags(f"--keys=label=:key_id={_req.KID_V.hex}:key={key.hex()}"),
         "--pssh", b"".join(boxes).hex(),
         "--clear_lead", "0"],
        check=True, capture_output=True, timeout=300)
    data = out.read_bytes()
    for box in boxes:  # our pssh boxes went into the init segment byte for byte
        assert box in data
    clear = framemd5(src)
    assert framemd5(out, keys=served) == clear
    try:
        bad = framemd5(out, keys=wrong)
    except RuntimeError:
        bad = []
    assert bad != clear
