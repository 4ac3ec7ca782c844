"""keys hands out the IV as bytes on every ContentKey the key server gave one for (explicitIV,
SPEKE v1 and v2 alike, else the IV= of v2 HLSSignalingData), so pipeline never parses HLS text
for it; a key server whose HLS IV contradicts the explicitIV is still refused."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator

import pytest
import requests
from lxml import etree

from speke_packager.constants import NS_CPIX, DrmSystem, Packaging, Scheme, SpekeVersion
from speke_packager.errors import CpixValidationError, ManifestError
from speke_packager.keys import EncryptionContract
from speke_packager.keys.cpix.parse import parse_cpix
from speke_packager.keys.request import SpekeRequest, build_request
from speke_packager.keys.validate import validate_response
from speke_packager.keyserver import KeyServer
from speke_packager.manifests.hls_signaling import hls_keys
from speke_packager.model import KeySet
from speke_packager.pipeline.contexts import KeyChoice

C = f"{{{NS_CPIX}}}"
WV, AES = DrmSystem.WIDEVINE, DrmSystem.AES128
HLS_IV = bytes(range(0x40, 0x50))


@pytest.fixture(scope="module")
def ks() -> Iterator[KeyServer]:
    with KeyServer(seed="content-key-iv") as server:
        yield server


def _answer(ks: KeyServer, c: EncryptionContract,
            edit: Callable[[str], str] = lambda line: line) -> tuple[SpekeRequest, KeySet]:
    """Ask our key server, pass every decoded HLSSignalingData line through ``edit`` and
    validate the answer."""
    req = build_request(c)
    r = requests.post(ks.speke_url, data=req.body, headers=dict(req.headers), timeout=10)
    assert r.status_code == 200, r.text
    root = etree.fromstring(r.content)
    for el in root.iter(f"{C}HLSSignalingData"):
        text = base64.b64decode(el.text or "").decode()
        el.text = base64.b64encode("\n".join(edit(ln) for ln in text.splitlines())
                                   .encode()).decode()
    return req, validate_response(req, parse_cpix(etree.tostring(root)), headers=dict(r.headers))


def _iv_from_choice(keys: KeySet, scheme: Scheme) -> list[bytes]:
    choice = KeyChoice(keyset=keys, scheme=scheme, explicit_iv=None, iv_source=os.urandom)
    return [choice.iv(e.key) for e in keys.entries]


def test_v1_answer_iv_is_the_explicit_iv(ks: KeyServer) -> None:
    c = EncryptionContract("movie-1", (AES,), (Packaging.HLS_TS,), Scheme.AES_128,
                           SpekeVersion.V1_0)
    req = build_request(c)
    r = requests.post(ks.speke_url, data=req.body, headers=dict(req.headers), timeout=10)
    keys = validate_response(req, parse_cpix(r.content), headers=dict(r.headers))
    sent = {k.kid: k.explicit_iv for k in req.keys}
    assert keys.entries and all(e.key.iv == sent[e.kid] and e.key.iv for e in keys.entries)
    # converted to the v2 shape once, in keys: the tag carries the same IV
    for e in keys.entries:
        sig = e.signal(AES)
        assert sig is not None and sig.hls_media and sig.uri_ext_x_key
        assert f"IV=0x{sent[e.kid].hex().upper()}" in sig.hls_media  # type: ignore[union-attr]
    assert _iv_from_choice(keys, Scheme.AES_128) == [e.key.iv for e in keys.entries]


def test_v2_hls_iv_becomes_the_content_key_iv(ks: KeyServer) -> None:
    c = EncryptionContract("movie-1", (WV,), (Packaging.HLS_FMP4,), Scheme.CBCS,
                           explicit_iv=False)
    # negative control: no explicitIV and no IV= in the lines -> no IV
    _, plain = _answer(ks, c)
    assert plain.entries and all(e.key.iv is None for e in plain.entries)
    assert all("IV=" not in (e.drm[0].hls_media or "") for e in plain.entries)
    _, keys = _answer(ks, c, lambda ln: f"{ln},IV=0x{HLS_IV.hex()}")
    assert keys.entries and all(e.key.iv == HLS_IV for e in keys.entries)
    assert _iv_from_choice(keys, Scheme.CBCS) == [HLS_IV] * len(keys.entries)
    # a short hexadecimal-sequence is an IV padded on the left, as HLS reads it
    _, short = _answer(ks, c, lambda ln: f"{ln},IV=0x0102")
    assert all(e.key.iv == bytes(14) + b"\x01\x02" for e in short.entries)


@pytest.mark.parametrize("bad, match", [
    ("IV=0x" + "00" * 17, "17 bytes"),
    ("IV=0xZZ", "not hexadecimal"),
    ("IV=0x01,IV=0x02", "appears twice"),
])
def test_v2_bad_hls_iv_is_refused(ks: KeyServer, bad: str, match: str) -> None:
    c = EncryptionContract("movie-1", (WV,), (Packaging.HLS_FMP4,), Scheme.CBCS,
                           explicit_iv=False)
    with pytest.raises(CpixValidationError, match=match) as ei:
        _answer(ks, c, lambda ln: f"{ln},{bad}")
    assert ei.value.check == "hls"


def test_hls_iv_that_contradicts_the_explicit_iv_is_refused(ks: KeyServer) -> None:
    c = EncryptionContract("movie-1", (WV,), (Packaging.HLS_FMP4,), Scheme.CBCS,
                           explicit_iv=True)

    def other_iv(line: str) -> str:
        head, _, _ = line.partition(",IV=0x")
        rest = line.split(",IV=0x", 1)[1].split(",", 1)[1]
        return f"{head},IV=0x{HLS_IV.hex()},{rest}"

    req, same = _answer(ks, c)  # negative control: the echoed IV and the lines agree
    sent = {k.kid: k.explicit_iv for k in req.keys}
    assert all(e.key.iv == sent[e.kid] for e in same.entries)
    for e, iv in zip(same.entries, _iv_from_choice(same, Scheme.CBCS), strict=True):
        (tag,) = hls_keys(e, Scheme.CBCS, iv=iv)
        assert tag.iv == sent[e.kid]
    req, keys = _answer(ks, c, other_iv)
    assert all(e.key.iv == {k.kid: k.explicit_iv for k in req.keys}[e.kid]
               for e in keys.entries)  # the explicitIV is the IV to encrypt with
    for e, iv in zip(keys.entries, _iv_from_choice(keys, Scheme.CBCS), strict=True):
        with pytest.raises(ManifestError, match="differs from the IV the media is encrypted"):
            hls_keys(e, Scheme.CBCS, iv=iv)
