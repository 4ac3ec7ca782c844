"""--trace / SpekeClient(trace=...): every exchange saved for a vendor, with content keys,
encrypted keys, MAC/document keys and credentials masked, structure and KIDs kept."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from lxml import etree

from speke_packager.constants import NS_CPIX, DrmSystem, Packaging, Scheme, SpekeVersion
from speke_packager.errors import OutputError
from speke_packager.keys import DeliveryKey, EncryptionContract, HeaderAuth, SpekeClient
from speke_packager.keys.trace import MASK, TraceRecorder
from speke_packager.keyserver import KeyServer
from tests.keys.conftest import Pki

WV, PR, FP, CK = DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.FAIRPLAY, DrmSystem.CLEARKEY
TOKEN = "Bearer tr4ce-s3cret-t0ken-value"
API_KEY = "api-key-0123456789-secret"


def forms(key: bytes) -> set[str]:
    b64 = base64.b64encode(key).decode()
    url = base64.urlsafe_b64encode(key).decode()
    return {key.hex(), key.hex().upper(), b64, b64.rstrip("="), url, url.rstrip("="),
            str(uuid.UUID(bytes=key)), str(uuid.UUID(bytes_le=key))}


def bundle_text(d: Path) -> str:
    files = sorted(p for p in d.rglob("*") if p.is_file())
    assert files
    return "\n".join(p.read_text(encoding="utf-8") for p in files)


def test_bundle_holds_no_key_in_any_form(tmp_path: Path, pki: Pki) -> None:
    trace = tmp_path / "trace"
    dk = DeliveryKey.load(pki.delivery.cert, pki.delivery.key, "s3cret")
    rec = TraceRecorder(trace)
    keys: list[bytes] = []
    kids: list[uuid.UUID] = []
    raw_answers: list[bytes] = []
    with KeyServer(seed="trace") as ks:
        auth = HeaderAuth({"Authorization": TOKEN, "x-api-key": API_KEY})
        plain = SpekeClient(ks.speke_url, retries=0, auth=auth, trace=rec)
        enc = SpekeClient(ks.speke_url, retries=0, delivery_key=dk, trace=rec)
        contracts = [
            (plain, EncryptionContract("movie-1", (WV, PR, FP, CK), (Packaging.DASH,
                                       Packaging.HLS_FMP4), Scheme.CBCS, SpekeVersion.V2_0,
                                       "PRESET-VIDEO-3", "PRESET-AUDIO-2")),
            (plain, EncryptionContract("movie-1", (WV, PR), (Packaging.DASH,), Scheme.CENC,
                                       SpekeVersion.V1_0)),
            (plain, EncryptionContract("movie-1", (DrmSystem.AES128,), (Packaging.HLS_TS,),
                                       Scheme.AES_128, SpekeVersion.V2_1)),
            (enc, EncryptionContract("movie-1", (WV, PR), (Packaging.DASH,), Scheme.CENC,
                                     SpekeVersion.V2_0)),
        ]
        for client, c in contracts:
            ks_ = client.fetch(c)
            keys += [e.key.key for e in ks_.entries]
            kids += [e.kid for e in ks_.entries]
            # control: the same request without a trace carries the keys in the clear
            req = client.prepare(c)
            raw_answers.append(requests.post(ks.speke_url, data=req.body,
                                             headers=dict(req.headers), timeout=10).content)
    text = bundle_text(trace)
    assert len(keys) >= 10
    for key in keys:
        for f in forms(key):
            assert f not in text, f"key form {f} found in the trace"
    assert any(base64.b64encode(k).decode().encode() in b"".join(raw_answers) for k in keys)
    # positive controls: KIDs, structure and signaling are there, credentials are not
    for kid in kids:
        assert str(kid) in text
    assert TOKEN.split()[1] not in text and API_KEY not in text
    summary = json.loads((trace / "summary.json").read_text())
    assert summary["exchanges"] == 4 and summary["results"] == {"ok": 4}
    item = summary["items"][0]
    assert item["request_headers"]["Authorization"] == f"Bearer {MASK}"
    assert item["request_headers"]["x-api-key"] == MASK
    assert item["status"] == 200 and item["speke_version_sent"] == "2.0"
    assert item["speke_version_answered"] == "2.0" and item["duration_ms"] > 0
    answer = etree.parse(str(trace / item["answer_file"])).getroot()
    assert answer.tag == f"{{{NS_CPIX}}}CPIX"
    values = answer.findall(f".//{{{NS_CPIX}}}ContentKey")
    assert values and all(MASK in etree.tostring(v).decode() for v in values)
    enc_answer = (trace / summary["items"][3]["answer_file"]).read_text()
    assert "DocumentKey" in enc_answer and "CipherValue>MASKED<" in enc_answer.replace(
        "enc:", "").replace("xenc:", "")


def test_retries_and_errors_are_recorded(tmp_path: Path) -> None:
    with KeyServer(seed="trace", faults=["status=503", "times=1"]) as ks:
        client = SpekeClient(ks.speke_url, retries=2, backoff=0.01,
                             trace=TraceRecorder(tmp_path))
        client.fetch(EncryptionContract("movie-1", (WV,), (Packaging.DASH,)))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["exchanges"] == 2 and summary["retries"] == 1
    assert [i["result"] for i in summary["items"]] == ["http-error", "ok"]
    assert summary["items"][0]["status"] == 503 and "503" in summary["items"][0]["error"]


def test_cli_trace_with_show_keys_output(tmp_path: Path) -> None:
    trace = tmp_path / "bundle"
    with KeyServer(seed="trace-cli") as ks:
        res = subprocess.run(
            [sys.executable, "-m", "speke_packager", "keys", "--speke-url", ks.speke_url,
             "--content-id", "movie-1", "--drm", "widevine,playready,fairplay", "--packaging",
             "dash,hls-fmp4", "--json", "--show-keys", "--trace", str(trace)],
            capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    keys = [bytes.fromhex(k["key"]) for k in out["keys"]]
    text = bundle_text(trace)
    assert keys and all(f not in text for k in keys for f in forms(k))
    assert all(k["kid"] in text for k in out["keys"])


def test_trace_directory_must_be_empty(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("a previous run")
    with pytest.raises(OutputError, match="not empty"):
        TraceRecorder(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot create the trace directory"):
        TraceRecorder(tmp_path / "file")
    res = subprocess.run([sys.executable, "-m", "speke_packager", "keys", "--speke-url",
                          "http://127.0.0.1:9/speke", "--content-id", "c1", "--trace",
                          str(tmp_path)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode != 0 and res.stderr.startswith("speke-packager: error: trace directory")
