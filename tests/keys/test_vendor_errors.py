"""Vendor errors decoded: a real HTTP server on 127.0.0.1 answers like API Gateway, Axinom, a
SPEKE v2 server, an HTML proxy or a leaky server; the client's error shows the server's own
words, the request id, no secrets, on one short line."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from speke_packager.constants import DrmSystem, Packaging
from speke_packager.errors import KeyServerHTTPError
from speke_packager.keys import EncryptionContract, SpekeClient
from speke_packager.keys.server_error import decode_error_answer, redact_text
from speke_packager.keys.trace import TraceRecorder

SECRET_HEX = "00112233445566778899aabbccddeeff"
SECRET_B64 = "ABEiM0RVZneImaq7zN3u/w=="
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwYWNrYWdlciIsImV4cCI6MTcwMDAwMDAwMH0.c2lnbmF0dXJlLXRleHQ"

# path -> (status, headers, body)
ANSWERS: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/apigw": (403, {"Content-Type": "application/json",
                     "x-amzn-ErrorType": "MissingAuthenticationTokenException",
                     "x-amzn-RequestId": "5e2f2c2a-1111-4c1b-9d55-0123456789ab"},
               json.dumps({"message": "Missing Authentication Token"}).encode()),
    "/axinom": (400, {"X-AxDRM-ErrorMessage": "Content key for KID "
                      "6a1d2c3e-4f50-4a6b-8c7d-9e0f1a2b1700 not allowed by the tenant",
                      "Content-Type": "text/plain"}, b""),
    "/spekev2": (422, {"Content-Type": "text/plain", "X-Speke-User-Agent": "vendor-ks/3.1"},
                 b"Missing ContentKey@commonEncryptionScheme for KID "
                 b"6a1d2c3e-4f50-4a6b-8c7d-9e0f1a2b1700"),
    "/html": (502, {"Content-Type": "text/html"},
              b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
              b"<body><h1>Bad Gateway</h1><p>upstream went away</p></body></html>"),
    "/leaky": (500, {"Content-Type": "text/plain", "x-vendor-error-detail": "db timeout",
                     "x-auth-error-token": "should-not-show-" + TOKEN},
               f"internal error; key={SECRET_HEX} iv {SECRET_B64} Authorization: Bearer {TOKEN} "
               f"aws AKIAABCDEFGHIJKLMNOP {'x' * 4000}".encode()),
    "/xml": (400, {"Content-Type": "application/xml"},
             b"<?xml version='1.0'?><Error><Code>BadRequest</Code>"
             b"<Message>contentId is not registered</Message></Error>"),
}


class _Vendor(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        status, headers, body = ANSWERS[self.path]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def vendor() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Vendor)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _error(url: str) -> KeyServerHTTPError:
    client = SpekeClient(url, retries=0)
    with pytest.raises(KeyServerHTTPError) as ei:
        client.fetch(EncryptionContract("movie-1", (DrmSystem.WIDEVINE,), (Packaging.DASH,)))
    return ei.value


@pytest.mark.parametrize("path, status, wanted", [
    ("/apigw", 403, ["Missing Authentication Token", "[MissingAuthenticationTokenException]",
                     "request id 5e2f2c2a-1111-4c1b-9d55-0123456789ab"]),
    ("/axinom", 400, ["not allowed by the tenant", "6a1d2c3e-4f50-4a6b-8c7d-9e0f1a2b1700"]),
    ("/spekev2", 422, ["(vendor-ks/3.1)", "Missing ContentKey@commonEncryptionScheme for KID "
                                          "6a1d2c3e-4f50-4a6b-8c7d-9e0f1a2b1700"]),
    ("/html", 502, ["502 Bad Gateway"]),
    ("/xml", 400, ["contentId is not registered"]),
    ("/leaky", 500, ["internal error", "x-vendor-error-detail: db timeout"]),
])
def test_client_error_shows_the_vendor_message(vendor: str, path: str, status: int,
                                               wanted: list[str]) -> None:
    err = _error(vendor + path)
    text = str(err)
    assert err.status == status and text.startswith(f"key server answered HTTP {status}")
    for w in wanted:
        assert w in text, text
    assert "\n" not in text and len(text) < 800
    for secret in (SECRET_HEX, SECRET_B64, TOKEN, "AKIAABCDEFGHIJKLMNOP", "should-not-show"):
        assert secret not in text and secret not in err.server_message
    if path == "/apigw":
        assert err.error_type == "MissingAuthenticationTokenException"
        assert err.request_id == "5e2f2c2a-1111-4c1b-9d55-0123456789ab"
    if path == "/html":
        assert "<" not in text


def test_speke_v2_string_recognised_and_plain_texts_kept() -> None:
    a = decode_error_answer(422, {"content-type": "text/plain"}, b"Unsupported CPIX@version")
    assert a.speke_error and a.message == "Unsupported CPIX@version"
    b = decode_error_answer(500, {}, b"something odd")
    assert not b.speke_error and b.describe() == "something odd"
    # negative control: KIDs in UUID form stay readable, 16-byte values do not
    kid = "6a1d2c3e-4f50-4a6b-8c7d-9e0f1a2b1700"
    assert kid in redact_text(f"KID {kid}") and SECRET_HEX not in redact_text(SECRET_HEX)


def test_trace_records_the_vendor_request_id(vendor: str, tmp_path: Path) -> None:
    client = SpekeClient(vendor + "/apigw", retries=0, trace=TraceRecorder(tmp_path))
    with pytest.raises(KeyServerHTTPError):
        client.fetch(EncryptionContract("movie-1", (DrmSystem.WIDEVINE,), (Packaging.DASH,)))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["request_ids"] == ["5e2f2c2a-1111-4c1b-9d55-0123456789ab"]
    (item,) = summary["items"]
    assert item["result"] == "http-error" and "Missing Authentication Token" in item["error"]
    answer = (tmp_path / item["answer_file"]).read_text()
    assert answer == '{"message": "Missing Authentication Token"}'


def test_conformance_quotes_the_vendor(vendor: str) -> None:
    from speke_packager.conformance import ConformanceOptions, Outcome, run_conformance
    from speke_packager.constants import SpekeVersion

    report = run_conformance(SpekeClient(vendor + "/apigw", retries=0),
                             ConformanceOptions(versions=(SpekeVersion.V2_0,),
                                                checks=("dash", "refuse-missing-content-id")))
    dash = report.result("dash", "2.0")
    assert dash is not None and dash.outcome is Outcome.FAIL
    assert dash.reason.startswith("widevine: HTTP 403: Missing Authentication Token "
                                  "[MissingAuthenticationTokenException] "
                                  "(request id 5e2f2c2a-1111-4c1b-9d55-0123456789ab); ")
    assert "playready: HTTP 403" in dash.reason and dash.hint
    assert dash.reason.split("; ")[0] == ("widevine: HTTP 403: Missing Authentication Token "
                           "[MissingAuthenticationTokenException] "
                           "(request id 5e2f2c2a-1111-4c1b-9d55-0123456789ab)")
    refused = report.result("refuse-missing-content-id", "2.0")
    assert refused is not None and refused.outcome is Outcome.FAIL
    assert "without the SPEKE v2 text 'Missing CPIX@contentId'" in refused.reason
