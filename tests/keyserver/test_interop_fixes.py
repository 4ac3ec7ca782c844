"""Interop fixes found against AWS's reference key server and verification suite: the HLS
AES-128 system is signalled METHOD=AES-128 whatever the key's scheme, and a SPEKE v2 request
without DRMSystem is a 4xx."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import pytest
import requests
from lxml import etree

from speke_packager.constants import (
    CLEARKEY_AES128,
    CLEARKEY_SAMPLE_AES,
    HLS_AES128_UNOFFICIAL,
    DrmSystem,
    Packaging,
    Scheme,
)
from speke_packager.keys import EncryptionContract, SpekeClient
from speke_packager.keyserver import KeyServer

from . import _req

C = f"{{{_req.CPIX}}}"


@pytest.fixture(scope="module")
def ks() -> Iterator[KeyServer]:
    with KeyServer(seed="interop") as server:
        yield server


def _media_line(ks: KeyServer, body: bytes, system: str) -> str:
    r = requests.post(ks.speke_url, data=body, timeout=10,
                      headers={"x-speke-version": "2.0", "content-type": "application/xml"})
    assert r.status_code == 200, r.text
    root = etree.fromstring(r.content)
    for d in root.iter(f"{C}DRMSystem"):
        if d.get("systemId") == system and d.get("kid") == str(_req.KID_V):
            for el in d.iter(f"{C}HLSSignalingData"):
                if el.get("playlist") == "media":
                    return base64.b64decode(el.text or "").decode()
    raise AssertionError("no media line")


@pytest.mark.parametrize("system, scheme, method", [
    (str(CLEARKEY_AES128), "cbcs", "AES-128"),  # the bug: was SAMPLE-AES
    (str(CLEARKEY_AES128), "cbc1", "AES-128"),
    (str(HLS_AES128_UNOFFICIAL), "cbcs", "AES-128"),
    (str(CLEARKEY_SAMPLE_AES), "cbcs", "SAMPLE-AES"),  # control: DASH-IF "HLS CBCS"
    (_req.FAIRPLAY, "cbcs", "SAMPLE-AES"),  # control
])
def test_hls_method_follows_the_system(ks: KeyServer, system: str, scheme: str,
                                       method: str) -> None:
    hls = ("media", "master")
    body = _req.v2_request(scheme=scheme, systems=(system,), placeholders={system: hls})
    line = _media_line(ks, body, system)
    assert line.startswith(f"#EXT-X-KEY:METHOD={method},"), line


def test_client_sample_aes_identity_uses_the_hls_cbcs_system(ks: KeyServer) -> None:
    """SAMPLE-AES with an identity key asks for DASH-IF's HLS CBCS system, so the key server's
    SAMPLE-AES line fits the media; AES-128 keeps 3ea8778f."""
    client = SpekeClient(ks.speke_url, retries=0)
    for scheme, system, method in ((Scheme.SAMPLE_AES, CLEARKEY_SAMPLE_AES, "SAMPLE-AES"),
                                   (Scheme.AES_128, CLEARKEY_AES128, "AES-128")):
        c = EncryptionContract("movie-1", (DrmSystem.AES128,), (Packaging.HLS_TS,), scheme)
        assert f'systemId="{system}"'.encode() in client.prepare(c).body
        keys = client.fetch(c)
        for e in keys.entries:
            sig = e.signal(DrmSystem.AES128)
            assert sig and sig.hls_media and sig.hls_media.startswith(
                f"#EXT-X-KEY:METHOD={method},")


def _without(body: bytes, name: str, *, only_first: bool = False) -> bytes:
    root = etree.fromstring(body)
    found = list(root.iter(f"{C}{name}"))
    for el in found[:1] if only_first else found:
        el.getparent().remove(el)
    return bytes(etree.tostring(root))


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_v2_request_without_drm_system_is_4xx(ks: KeyServer, version: str) -> None:
    cpix = "2.3" if version == "2.0" else "2.4"
    body = _req.v2_request(version=cpix, systems=(_req.WIDEVINE,))
    h = {"x-speke-version": version, "content-type": "application/xml"}
    ok = requests.post(ks.speke_url, data=body, headers=h, timeout=10)
    assert ok.status_code == 200  # control
    for variant in (_without(body, "DRMSystem"), _without(body, "DRMSystem", only_first=True),
                    _without(body, "DRMSystemList")):
        r = requests.post(ks.speke_url, data=variant, headers=h, timeout=10)
        assert 400 <= r.status_code < 500, (r.status_code, r.text)
        assert "DRMSystem" in r.text


def test_v1_request_without_drm_system_still_answers(ks: KeyServer) -> None:
    kid = uuid.uuid4()
    body = (f'<cpix:CPIX id="c1" xmlns:cpix="{_req.CPIX}"><cpix:ContentKeyList>'
            f'<cpix:ContentKey kid="{kid}"/></cpix:ContentKeyList></cpix:CPIX>').encode()
    r = requests.post(ks.speke_url, data=body, timeout=10,
                      headers={"content-type": "application/xml"})
    assert r.status_code == 200, r.text  # v1 keeps the key-only answer (no rule changes there)
