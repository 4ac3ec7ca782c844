"""Every public sample SPEKE request gets the right answer: valid (CPIX 2.3 XSD where the request
itself is schema-valid), complete, KID-bearing; the negative samples get the right 4xx."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import pytest
import requests
from lxml import etree

from speke_packager.keyserver import KeyServer
from tests.conftest import shared_folder, shared_skip_reason

from ._check import check_answer, expected_key

SAMPLES = shared_folder("cpix-samples") or Path("/nonexistent")
# without ../shared: one skipped case per parametrized test, with the one-line reason
_ABSENT = [pytest.param("", marks=pytest.mark.skip(reason=shared_skip_reason("cpix-samples")))]
REQUESTS = sorted(p.name for p in SAMPLES.glob("speke-reference-server__*.xml")) or _ABSENT
LAMBDA = sorted(p.name for p in SAMPLES.glob("AWS-*__tests__lambda__*_SPEKEv2.json")) or _ABSENT

NEGATIVE = {
    "negative_wrong_version": (422, "Unsupported CPIX@version"),
    "negative_preset_shared": (422, None),
    "server_api_body_spekev2.xml": (
        422, "ContentKey@commonEncryptionScheme non compatible with DRMSystem "
             "94ce86fb-07ff-4f43-adb8-93d2fa968ca2"),
}
CONTRACT_ERRORS = {"Malformed encryption contract",
                   "Requested CPIX encryption contract not supported",
                   "Missing CPIX encryption contract"}


def _expected(name: str) -> tuple[int, str | None]:
    for marker, result in NEGATIVE.items():
        if marker in name:
            return result
    return 200, None


@pytest.fixture(scope="module")
def ks() -> KeyServer:
    server = KeyServer(allow_fault_header=True, seed="samples").start()
    yield server  # type: ignore[misc]
    server.stop()


def _post(ks: KeyServer, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(ks.speke_url, data=body, headers=headers, timeout=30)


@pytest.mark.parametrize("name", REQUESTS)
def test_sample_request(name: str, ks: KeyServer, cpix_schema: etree.XMLSchema) -> None:
    body = (SAMPLES / name).read_bytes()
    root = etree.fromstring(body)
    v1 = root.get("contentId") is None
    headers = {"content-type": "application/xml"}
    if not v1:
        headers["x-speke-version"] = "2.0"
    r = _post(ks, body, headers)
    status, reason = _expected(name)
    assert r.status_code == status, r.text
    assert "Traceback" not in r.text
    if status != 200:
        if reason is not None:
            assert r.text.strip() == reason
        else:
            assert r.text.strip() in CONTRACT_ERRORS
        return
    assert r.headers["content-type"].startswith("application/xml")
    if v1:
        assert "speke-user-agent" in r.headers and "x-speke-version" not in r.headers
    else:
        assert r.headers["x-speke-version"] == "2.0" and r.headers["x-speke-user-agent"]
    checked = check_answer(body, r.content, license_url=ks.clearkey_license_url,
                           key_url_prefix=ks.url)
    content_id = root.get("contentId") or root.get("id") or ""
    for kid, key in checked.keys.items():
        assert key == expected_key("samples", content_id, kid)
        assert key != expected_key("other-seed", content_id, kid)  # negative control
    if cpix_schema.validate(root):
        answer = etree.fromstring(r.content)
        assert cpix_schema.validate(answer), cpix_schema.error_log


@pytest.mark.parametrize("name", LAMBDA)
def test_mediapackage_lambda_requests(name: str, ks: KeyServer) -> None:
    event = json.loads((SAMPLES / name).read_text())
    body = base64.b64decode(event["body"]) if event.get("isBase64Encoded", True) else \
        event["body"].encode()
    r = _post(ks, body, dict(event["headers"]))
    assert r.status_code == 200, r.text
    assert r.headers["X-Speke-Version"] == event["headers"]["x-speke-version"]
    check_answer(body, r.content, license_url=ks.clearkey_license_url)


def test_mediapackage_apigw_request(ks: KeyServer, cpix_samples: Path) -> None:
    body = (cpix_samples / "AWS-ELEMENTAL-MEDIAPACKAGE-SPEKE-VERSION-CONVERTER__test.apigw.request.xml"
            ).read_bytes()
    r = _post(ks, body, {"x-speke-version": "2.0"})
    assert r.status_code == 200, r.text
    checked = check_answer(body, r.content)
    assert set(checked.keys) == {uuid.UUID("888f278a-1f07-3429-a309-ae5d357766f3")}


def test_not_well_formed_sample_is_400(ks: KeyServer, cpix_samples: Path) -> None:
    body = (cpix_samples / "AWS-ELEMENTAL-MEDIAPACKAGE-SPEKE-VERSION-CONVERTER__test.xml").read_bytes()
    r = _post(ks, body, {"x-speke-version": "2.0"})
    assert r.status_code == 400
    assert "well-formed" in r.text and "Traceback" not in r.text


def test_samples_found(cpix_samples: Path) -> None:
    assert len(REQUESTS) >= 50 and LAMBDA
