"""Headless Chromium talks to the key server across origins: CORS preflight, and a real EME
ClearKey session whose licence comes from ``/clearkey/license`` (no media needed)."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from speke_packager.keyserver import KeyServer

from . import _req
from ._check import check_answer

pytestmark = pytest.mark.e2e

PAGE = b"<!doctype html><html><body>page on another origin</body></html>"

EME_JS = """
async ([licenceUrl, kidB64u]) => {
  const access = await navigator.requestMediaKeySystemAccess('org.w3.clearkey', [{
    initDataTypes: ['keyids'],
    videoCapabilities: [{contentType: 'video/mp4; codecs="avc1.42E01E"'}]}]);
  const mk = await access.createMediaKeys();
  const session = mk.createSession('temporary');
  const licence = new Promise((resolve, reject) => {
    session.addEventListener('message', async (ev) => {
      try {
        const resp = await fetch(licenceUrl, {method: 'POST', body: ev.message,
                                              headers: {'Content-Type': 'application/json'}});
        if (!resp.ok) { reject(new Error('licence HTTP ' + resp.status)); return; }
        const body = await resp.arrayBuffer();
        await session.update(body);
        resolve(new TextDecoder().decode(body));
      } catch (e) { reject(e); }
    });
  });
  const initData = new TextEncoder().encode(JSON.stringify({kids: [kidB64u]}));
  await session.generateRequest('keyids', initData);
  const text = await licence;
  const statuses = [];
  session.keyStatuses.forEach((status, kid) => {
    statuses.push([btoa(String.fromCharCode(...new Uint8Array(kid))), status]);
  });
  return {text, statuses};
}
"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def page_origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_eme_clearkey_licence_from_keyserver(page_origin: str, playwright_instance: Any) -> None:
    body = _req.v2_request(systems=(_req.CLEARKEY,), scheme="cenc")
    with KeyServer(allow_fault_header=True, seed="browser") as ks, contextlib.nullcontext(playwright_instance) as p:
        r = requests.post(ks.speke_url, data=body, headers={"x-speke-version": "2.0"}, timeout=10)
        keys = check_answer(body, r.content, license_url=ks.clearkey_license_url).keys
        kid_b64u = base64.urlsafe_b64encode(_req.KID_V.bytes).rstrip(b"=").decode()
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page()
            page.goto(page_origin + "/")
            result = page.evaluate(EME_JS, [ks.clearkey_license_url, kid_b64u])
            # a KID the server does not know: the licence request fails (negative control)
            unknown = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            with pytest.raises(Exception, match="licence HTTP 404"):
                page.evaluate(EME_JS, [ks.clearkey_license_url, unknown])
        finally:
            browser.close()
    assert result["statuses"] == [[base64.b64encode(_req.KID_V.bytes).decode(), "usable"]]
    jwk = json.loads(result["text"])["keys"][0]
    assert base64.urlsafe_b64decode(jwk["k"] + "==") == keys[_req.KID_V]


def test_cross_origin_key_fetch_needs_cors(page_origin: str, playwright_instance: Any) -> None:
    with KeyServer(allow_fault_header=True, seed="browser") as ks, contextlib.nullcontext(playwright_instance) as p:
        ks.register_key(_req.KID_A, bytes(range(16)))
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page()
            page.goto(page_origin + "/")
            got = page.evaluate("""async (url) => {
                const r = await fetch(url, {headers: {'X-Fault': 'delay=0'}});  // preflighted
                return Array.from(new Uint8Array(await r.arrayBuffer()));
            }""", ks.key_url(_req.KID_A))
            # /healthz has no CORS headers: the browser must refuse to hand it to the page
            blocked = page.evaluate("""async (url) => {
                try { await fetch(url); return 'allowed'; } catch (e) { return 'blocked'; }
            }""", ks.url + "/healthz")
        finally:
            browser.close()
    assert got == list(range(16))
    assert blocked == "blocked"
