"""encrypt-vod --trace DIR: the SPEKE exchange of a real packaging run is saved for the vendor,
without any content key in any form (the KIDs are there: the control)."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

from lxml import etree

from speke_packager.constants import NS_CPIX

from .conftest import cli


def test_encrypt_vod_trace_holds_no_key(keyserver, packages, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trace = tmp_path / "trace"
    res = cli("encrypt-vod", str(packages("hls-fmp4")), "-o", str(tmp_path / "out"), "--quiet",
              "--speke-url", keyserver.speke_url, "--content-id", "movie-trace",
              "--drm", "widevine,fairplay", "--video-preset", "SHARED", "--audio-preset",
              "SHARED", "--trace", str(trace))
    assert res.returncode == 0, res.stderr
    summary = json.loads((trace / "summary.json").read_text())
    assert summary["exchanges"] >= 1 and summary["results"] == {"ok": summary["exchanges"]}
    text = "\n".join(p.read_text() for p in trace.iterdir())
    kids = [uuid.UUID(ck.get("kid")) for req in trace.glob("*-request.xml")
            for ck in etree.parse(str(req)).getroot().iter(f"{{{NS_CPIX}}}ContentKey")]
    assert kids and all(str(k) in text for k in kids)
    for kid in kids:
        key = keyserver.key_for("movie-trace", kid)
        b64 = base64.b64encode(key).decode()
        for form in (key.hex(), key.hex().upper(), b64, b64.rstrip("="),
                     base64.urlsafe_b64encode(key).decode().rstrip("="),
                     str(uuid.UUID(bytes=key))):
            assert form not in text
