"""Interop fix: our own random explicitIV goes out by default wherever the IV is used (FairPlay,
AES-128 key delivery, HLS AES-128/SAMPLE-AES/MPEG-TS), its echo is checked, and a server that
puts the content key in its place is refused with a hint naming --explicit-iv."""

from __future__ import annotations

import base64
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
import requests
from lxml import etree

from speke_packager.constants import NS_CPIX, DrmSystem, Packaging, Scheme, SpekeVersion
from speke_packager.errors import CpixValidationError
from speke_packager.keys import EncryptionContract, SpekeClient
from speke_packager.keys.cpix.parse import parse_cpix
from speke_packager.keys.request import build_request, wants_explicit_iv
from speke_packager.keys.validate import validate_response
from speke_packager.keyserver import KeyServer

FP, WV, AES = DrmSystem.FAIRPLAY, DrmSystem.WIDEVINE, DrmSystem.AES128
C = f"{{{NS_CPIX}}}"


@pytest.fixture(scope="module")
def ks() -> Iterator[KeyServer]:
    with KeyServer(seed="iv-tests") as server:
        yield server


@pytest.mark.parametrize("drm, packaging, scheme, wanted", [
    ((FP,), (Packaging.HLS_FMP4,), Scheme.CBCS, True),
    ((FP,), (Packaging.HLS_TS,), Scheme.SAMPLE_AES, True),
    ((AES,), (Packaging.HLS_TS,), Scheme.AES_128, True),
    ((AES,), (Packaging.HLS_TS,), Scheme.SAMPLE_AES, True),
    ((WV,), (Packaging.DASH,), Scheme.CENC, False),
    ((WV,), (Packaging.DASH, Packaging.HLS_FMP4), Scheme.CBCS, False),
])
def test_default_follows_where_the_iv_is_used(drm: tuple[DrmSystem, ...],
                                              packaging: tuple[Packaging, ...], scheme: Scheme,
                                              wanted: bool) -> None:
    c = EncryptionContract("movie-1", drm, packaging, scheme)
    assert wants_explicit_iv(c) is wanted
    req = build_request(c)
    assert all((k.explicit_iv is not None) is wanted for k in req.keys)
    assert (b"explicitIV=" in req.body) is wanted
    # the explicit choice wins both ways
    for forced in (True, False):
        from dataclasses import replace
        req2 = build_request(replace(c, explicit_iv=forced))
        assert all((k.explicit_iv is not None) is forced for k in req2.keys)


@pytest.mark.parametrize("version", list(SpekeVersion))
def test_fairplay_gets_our_iv_back(ks: KeyServer, version: SpekeVersion) -> None:
    packaging = (Packaging.HLS_TS,) if version is SpekeVersion.V1_0 else (Packaging.HLS_FMP4,)
    scheme = Scheme.SAMPLE_AES if version is SpekeVersion.V1_0 else Scheme.CBCS
    c = EncryptionContract("movie-1", (FP,), packaging, scheme, version)
    req = build_request(c)
    r = requests.post(ks.speke_url, data=req.body, headers=dict(req.headers), timeout=10)
    keys = validate_response(req, parse_cpix(r.content), headers=dict(r.headers))
    sent = {k.kid: k.explicit_iv for k in req.keys}
    assert keys.entries and all(e.key.iv == sent[e.kid] for e in keys.entries)
    assert all(e.key.iv and len(e.key.iv) == 16 for e in keys.entries)


def _reference_server_answer(ks: KeyServer, c: EncryptionContract) -> tuple[object, bytes,
                                                                             dict[str, str]]:
    """Behave like AWS's reference server: fill explicitIV with the content key when the
    request carries none (our server echoes only; the key is known from the deterministic
    derivation)."""
    req = build_request(c)
    r = requests.post(ks.speke_url, data=req.body, headers=dict(req.headers), timeout=10)
    root = etree.fromstring(r.content)
    for ck in root.iter(f"{C}ContentKey"):
        key = ks.key_for(c.content_id, uuid.UUID(ck.get("kid")))
        ck.set("explicitIV", base64.b64encode(key).decode())
    return req, etree.tostring(root), dict(r.headers)


def test_content_key_as_iv_is_refused_with_the_option_named(ks: KeyServer) -> None:
    c = EncryptionContract("movie-1", (FP,), (Packaging.HLS_FMP4,), Scheme.CBCS,
                           explicit_iv=False)
    req, body, headers = _reference_server_answer(ks, c)
    with pytest.raises(CpixValidationError) as ei:
        validate_response(req, parse_cpix(body), headers=headers)  # type: ignore[arg-type]
    assert ei.value.check == "explicit-iv"
    assert "equals the content key" in str(ei.value) and "--explicit-iv" in str(ei.value)
    # negative control: the same answer with the key server's own (echoed) IV is fine
    c2 = EncryptionContract("movie-1", (FP,), (Packaging.HLS_FMP4,), Scheme.CBCS)
    keys = SpekeClient(ks.speke_url, retries=0).fetch(c2)
    assert all(e.key.iv != ks.key_for("movie-1", e.kid) for e in keys.entries)


def test_changed_echo_is_refused_and_missing_echo_uses_ours(ks: KeyServer) -> None:
    c = EncryptionContract("movie-1", (AES,), (Packaging.HLS_TS,), Scheme.AES_128)
    req = build_request(c)
    r = requests.post(ks.speke_url, data=req.body, headers=dict(req.headers), timeout=10)
    root = etree.fromstring(r.content)
    ck = next(root.iter(f"{C}ContentKey"))
    ck.set("explicitIV", base64.b64encode(b"\x05" * 16).decode())
    with pytest.raises(CpixValidationError, match="differs from the one sent"):
        validate_response(req, parse_cpix(etree.tostring(root)), headers=dict(r.headers))
    del ck.attrib["explicitIV"]
    got = validate_response(req, parse_cpix(etree.tostring(root)), headers=dict(r.headers))
    sent = {k.kid: k.explicit_iv for k in req.keys}
    assert all(e.key.iv == sent[e.kid] for e in got.entries)


def test_cli_option_both_ways(ks: KeyServer) -> None:
    base = [sys.executable, "-m", "speke_packager", "keys", "--speke-url", ks.speke_url,
            "--content-id", "movie-1", "--drm", "fairplay", "--packaging", "hls-fmp4", "--json"]
    on = subprocess.run(base, capture_output=True, text=True, timeout=60,
                         check=False)
    off = subprocess.run([*base, "--no-explicit-iv"], capture_output=True, text=True, timeout=60,
                         check=False)
    assert on.returncode == 0 and off.returncode == 0, on.stderr + off.stderr
    assert '"iv": null' not in on.stdout and '"iv": null' in off.stdout
