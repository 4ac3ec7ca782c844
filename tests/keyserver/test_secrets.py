"""Content keys (and document/MAC keys) never reach logs, error bodies or reprs."""

from __future__ import annotations

import base64
import logging
import uuid

import pytest
import requests

from speke_packager.keyserver import KeyServer
from speke_packager.keyserver.delivery import DocumentKeys
from speke_packager.keyserver.signaling import KeyContext

from . import _req
from ._check import check_answer
from .conftest import CertPair


def _forms(key: bytes) -> list[str]:
    return [key.hex(), key.hex().upper(), base64.b64encode(key).decode(),
            base64.urlsafe_b64encode(key).rstrip(b"=").decode()]


def test_no_key_in_logs(caplog: pytest.LogCaptureFixture, delivery_certs: dict[int, CertPair]
                        ) -> None:
    caplog.set_level(logging.DEBUG)
    bodies = [_req.v2_request(systems=(_req.WIDEVINE, _req.PLAYREADY, _req.CLEARKEY),
                              scheme="cenc"),
              _req.v2_request(cert_der=[delivery_certs[2048].cert_der])]
    keys: list[bytes] = []
    texts: list[str] = []
    with KeyServer(allow_fault_header=True, seed="secret-test", log_requests=True) as ks:
        for body in bodies:
            r = requests.post(ks.speke_url, data=body, headers={"x-speke-version": "2.0"},
                              timeout=10)
            checked = check_answer(body, r.content)
            keys += checked.keys.values()
        for fault in ("status=500", "reset", "truncate", "bogus"):
            try:
                r = requests.post(ks.speke_url, data=bodies[0], timeout=10,
                                  headers={"x-speke-version": "2.0", "x-fault": fault})
                if fault != "truncate":
                    texts.append(r.text)
            except requests.ConnectionError:
                pass
        kid = _req.KID_V
        r = requests.post(ks.clearkey_license_url, timeout=10,
                          data=f'{{"kids":["{base64.urlsafe_b64encode(kid.bytes).rstrip(b"=").decode()}"]}}')
        assert r.status_code == 200
        texts.append(repr(ks))
        for bad in (b"<x", _req.v2_request(content_id="")):
            texts.append(requests.post(ks.speke_url, data=bad, timeout=10,
                                       headers={"x-speke-version": "2.0"}).text)
    assert keys
    log_text = caplog.text + "\n".join(texts)
    assert "POST /speke" in caplog.text  # the request log is there
    for key in keys:
        for form in _forms(key):
            assert form not in log_text


def test_reprs_hide_secrets() -> None:
    key = bytes(range(16))
    ctx = KeyContext(kid=uuid.uuid4(), key=key, scheme="cenc", system_id=uuid.uuid4(),
                     content_id="c", explicit_iv=None, key_url="u", license_url="l",
                     playready_la_url="p")
    dk = DocumentKeys()
    for text in (repr(ctx), str(ctx), repr(dk)):
        for form in _forms(key) + _forms(dk.document_key) + _forms(dk.mac_key):
            assert form not in text
