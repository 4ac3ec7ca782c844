"""Answer validation: good answers from the real local key server, bad variants made by
mutating them here, each failing with its own check name and KID."""

from __future__ import annotations

import base64
import struct
import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest
import requests
from lxml import etree

from speke_packager.constants import (
    NS_CPIX,
    NS_PSKC,
    NS_SPEKE,
    DrmSystem,
    Packaging,
    Scheme,
    SpekeVersion,
)
from speke_packager.drm.pssh import build_pssh
from speke_packager.errors import CpixIntegrityError, CpixValidationError
from speke_packager.keys.cpix.parse import parse_cpix
from speke_packager.keys.drm_signals import check_playready_object
from speke_packager.keys.envelope import DeliveryKey
from speke_packager.keys.request import EncryptionContract, SpekeRequest, build_request
from speke_packager.keys.validate import validate_response
from speke_packager.keyserver import KeyServer
from speke_packager.model import KeyPeriod
from tests.keys.conftest import Pki

C = f"{{{NS_CPIX}}}"
P = f"{{{NS_PSKC}}}"
WV, PR, FP, CK, AES = (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.FAIRPLAY,
                       DrmSystem.CLEARKEY, DrmSystem.AES128)

BASE = EncryptionContract("chan-7", (WV, PR, FP), (Packaging.DASH, Packaging.HLS_FMP4),
                          Scheme.CBCS, SpekeVersion.V2_0, "PRESET-VIDEO-2", "PRESET-AUDIO-1",
                          period=KeyPeriod(42))


def _answer(ks: KeyServer, req: SpekeRequest, fault: str | None = None
            ) -> tuple[bytes, dict[str, str]]:
    h = dict(req.headers)
    if fault:
        h["x-fault"] = fault
    r = requests.post(ks.speke_url, data=req.body, headers=h, timeout=10)
    assert r.status_code == 200, r.text
    return r.content, dict(r.headers)


def _mutate(body: bytes, fn: Callable[[etree._Element], None]) -> bytes:
    root = etree.fromstring(body)
    fn(root)
    return bytes(etree.tostring(root))


def _b64set(el: etree._Element, raw: bytes) -> None:
    el.text = base64.b64encode(raw).decode()


def _drm(root: etree._Element, drm: DrmSystem, n: int = 0) -> etree._Element:
    return [d for d in root.iter(f"{C}DRMSystem") if d.get("systemId") == str(drm.system_id)][n]


def test_good_answer_every_field(ks: KeyServer) -> None:
    req = build_request(BASE)
    body, headers = _answer(ks, req)
    keys = validate_response(req, parse_cpix(body), headers=headers)
    assert [e.track_type for e in keys] == ["SD", "HD", "AUDIO"]
    for e in keys:
        assert e.key.key == ks.key_for("chan-7", e.kid)
        assert e.period == KeyPeriod(42)
        wv, pr, fp = e.signal(WV), e.signal(PR), e.signal(FP)
        assert wv and pr and fp
        assert wv.pssh and wv.pssh[4:8] == b"pssh" and wv.pssh[12:28] == WV.system_id.bytes
        assert wv.content_protection_data and "pssh" in wv.content_protection_data
        assert wv.hls_media and wv.hls_media.startswith("#EXT-X-KEY:METHOD=SAMPLE-AES,")
        assert wv.hls_master and wv.hls_master.startswith("#EXT-X-SESSION-KEY:")
        assert pr.playready_object and pr.playready_object[:4] == struct.pack(
            "<I", len(pr.playready_object))
        assert fp.pssh is None and fp.hls_media and "skd://" in fp.hls_media
    # key selection by track works on the result
    from speke_packager.model import TrackInfo, TrackKind
    sd = keys.select(TrackInfo(TrackKind.VIDEO, "avc1", 640, 360))
    hd = keys.select(TrackInfo(TrackKind.VIDEO, "avc1", 1920, 1080))
    au = keys.select(TrackInfo(TrackKind.AUDIO, "mp4a", channels=2))
    assert sd and hd and au and sd.track_type == "SD" and hd.track_type == "HD"


def _wrong_system_pssh(root: etree._Element) -> None:
    box = build_pssh(PR.system_id, b"")
    wv = _drm(root, WV)
    _b64set(wv.find(f"{C}PSSH"), box)
    cpd = f'<cenc:pssh xmlns:cenc="urn:mpeg:cenc:2013">{base64.b64encode(box).decode()}</cenc:pssh>'
    _b64set(wv.find(f"{C}ContentProtectionData"), cpd.encode())


def _extra_key(root: etree._Element) -> None:
    first = root.find(f"{C}ContentKeyList/{C}ContentKey")
    copy = etree.fromstring(etree.tostring(first))
    copy.set("kid", str(uuid.uuid4()))
    root.find(f"{C}ContentKeyList").append(copy)


def _kid0(req: SpekeRequest) -> str:
    return str(req.keys[0].kid)


MUTATIONS: list[tuple[str, Callable[[etree._Element], None], str]] = [
    ("missing DRMSystem", lambda r: _drm(r, PR).getparent().remove(_drm(r, PR)), "drm-system"),
    ("duplicate DRMSystem", lambda r: _drm(r, WV).addnext(etree.fromstring(
        etree.tostring(_drm(r, WV)))), "drm-system"),
    ("wrong kid", lambda r: r.find(f"{C}ContentKeyList/{C}ContentKey").set(
        "kid", "11111111-2222-4333-8444-555555555555"), "kid"),
    ("duplicate kid", lambda r: r.findall(f"{C}ContentKeyList/{C}ContentKey")[1].set(
        "kid", r.find(f"{C}ContentKeyList/{C}ContentKey").get("kid")), "duplicate-kid"),
    ("extra key", _extra_key, "key-count"),
    ("short key", lambda r: _b64set(r.find(f".//{P}PlainValue"), b"\x01" * 15), "key-length"),
    ("bad base64 key", lambda r: setattr(r.find(f".//{P}PlainValue"), "text", "!!notb64=="),
     "base64"),
    ("two secrets", lambda r: r.find(f"{C}ContentKeyList/{C}ContentKey/{C}Data").addnext(
        etree.fromstring(etree.tostring(r.find(f"{C}ContentKeyList/{C}ContentKey/{C}Data")))),
     "key-value"),
    ("empty key", lambda r: setattr(r.find(f".//{P}PlainValue"), "text", ""), "key-value"),
    ("all-zero key", lambda r: _b64set(r.find(f".//{P}PlainValue"), bytes(16)), "strict"),
    ("same key twice", lambda r: setattr(r.findall(f".//{P}PlainValue")[1], "text",
                                         r.findall(f".//{P}PlainValue")[0].text), "strict"),
    ("pssh mismatch", lambda r: _b64set(_drm(r, WV).find(f"{C}PSSH"), build_pssh(
        WV.system_id, b"\x08\x01")), "pssh-cpd"),
    ("pssh wrong system", _wrong_system_pssh, "pssh"),
    ("pssh not a box", lambda r: _b64set(_drm(r, WV).find(f"{C}PSSH"), b"garbage-bytes" * 3),
     "pssh"),
    ("pssh bad base64", lambda r: setattr(_drm(r, WV).find(f"{C}PSSH"), "text", "@@@"), "base64"),
    ("empty placeholder", lambda r: setattr(_drm(r, WV).find(f"{C}PSSH"), "text", None),
     "placeholder"),
    ("missing HLS master", lambda r: _drm(r, FP).remove(_drm(r, FP).findall(
        f"{C}HLSSignalingData")[1]), "placeholder"),
    ("cpd not xml", lambda r: _b64set(_drm(r, WV).find(f"{C}ContentProtectionData"),
                                      b"<cenc:pssh>"), "cpd"),
    ("hls wrong method", lambda r: _b64set(_drm(r, FP).findall(f"{C}HLSSignalingData")[0],
        base64.b64decode(_drm(r, FP).findall(f"{C}HLSSignalingData")[0].text).replace(
            b"SAMPLE-AES", b"SAMPLE-AES-CTR")), "hls"),
    ("hls wrong keyformat", lambda r: [_b64set(h, base64.b64decode(h.text).replace(
        b"com.apple.streamingkeydelivery", b"identity")) for h in _drm(r, FP).findall(
            f"{C}HLSSignalingData")], "hls"),
    ("hls media/master swapped", lambda r: [h.set("playlist", "master" if h.get("playlist") ==
        "media" else "media") for h in _drm(r, FP).findall(f"{C}HLSSignalingData")], "hls"),
    ("scheme changed", lambda r: [k.set("commonEncryptionScheme", "cenc") for k in r.findall(
        f"{C}ContentKeyList/{C}ContentKey")], "scheme"),
    ("content id changed", lambda r: r.set("contentId", "other"), "content-id"),
    ("cpix version changed", lambda r: r.set("version", "2.4"), "version-echo"),
    ("track type changed", lambda r: r.find(f".//{C}ContentKeyUsageRule").set(
        "intendedTrackType", "UHD"), "usage-rules"),
    ("period index changed", lambda r: r.find(f".//{C}ContentKeyPeriod").set("index", "43"),
     "periods"),
    ("filters changed", lambda r: r.find(f".//{C}VideoFilter").set("maxPixels", "1"),
     "usage-rules"),
    ("two rule lists", lambda r: r.append(etree.fromstring(etree.tostring(r.find(
        f"{C}ContentKeyUsageRuleList")))), "lists"),
    ("speke element in v2", lambda r: _drm(r, WV).append(etree.Element(
        f"{{{NS_SPEKE}}}KeyFormat")), "placeholder"),
    ("uri ext x key in v2", lambda r: etree.SubElement(_drm(r, WV), f"{C}URIExtXKey").__setattr__(
        "text", "aGk="), "placeholder"),
    ("explicit iv wrong size", lambda r: r.find(f"{C}ContentKeyList/{C}ContentKey").set(
        "explicitIV", base64.b64encode(b"x" * 8).decode()), "explicit-iv"),
    ("encrypted value without delivery", lambda r: r.find(f".//{P}Secret").insert(0,
        etree.Element(f"{P}EncryptedValue")), "key-value"),
    ("pro bad length", lambda r: _b64set(r.find(f".//{C}DRMSystem[@systemId='{PR.system_id}']"
                                               f"/{C}PSSH"), _bad_pro_pssh()), "playready-pro"),
]


def _bad_pro_pssh() -> bytes:
    header = "<WRMHEADER/>".encode("utf-16-le")
    pro = struct.pack("<IHHH", 10 + len(header) + 5, 1, 1, len(header)) + header
    return build_pssh(PR.system_id, pro)


@pytest.mark.parametrize(("name", "fn", "check"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_mutated_answers_fail_their_check(ks: KeyServer, name: str,
                                          fn: Callable[[etree._Element], None],
                                          check: str) -> None:
    req = build_request(BASE)
    body, headers = _answer(ks, req)
    validate_response(req, parse_cpix(body), headers=headers)  # the unmutated answer passes
    bad = _mutate(body, fn)
    with pytest.raises(CpixValidationError) as ei:
        validate_response(req, parse_cpix(bad), headers=headers)
    assert ei.value.check == check, str(ei.value)
    assert f"[{check}]" in str(ei.value)


@pytest.mark.parametrize(("headers_fn", "check"), [
    (lambda h: {**h, "X-Speke-Version": "1.0"}, "version-echo"),
    (lambda h: {k: v for k, v in h.items() if k.lower() != "x-speke-version"}, "version-echo"),
])
def test_header_checks(ks: KeyServer, headers_fn: Callable[[dict[str, str]], dict[str, str]],
                       check: str) -> None:
    req = build_request(BASE)
    body, headers = _answer(ks, req)
    with pytest.raises(CpixValidationError) as ei:
        validate_response(req, parse_cpix(body), headers=headers_fn(headers))
    assert ei.value.check == check


def test_kid_override_is_followed(ks: KeyServer) -> None:
    req = build_request(BASE)
    body, headers = _answer(ks, req)
    old = _kid0(req)
    new = "0b7e4a52-1c3d-4e5f-8a9b-00000000a001"
    mutated = body.replace(old.encode(), new.encode())
    keys = validate_response(req, parse_cpix(mutated), headers=headers)
    assert str(keys.entries[0].kid) == new and keys.entries[0].track_type == "SD"
    # ... but a new KID whose rule still names the old one is ambiguous -> refused
    only_key = _mutate(body, lambda r: r.find(f"{C}ContentKeyList/{C}ContentKey").set("kid", new))
    with pytest.raises(CpixValidationError):
        validate_response(req, parse_cpix(only_key), headers=headers)


@pytest.mark.parametrize(("fault", "check"), [
    ("wrong-kid", "kid"), ("pssh-mismatch", "pssh-cpd"), ("change-scheme", "scheme"),
    ("change-rules", "usage-rules"), ("change-content-id", "content-id"),
    ("version=1.0", "version-echo"), ("version=none", "version-echo"),
    ("drop=PSSH", "placeholder"), ("empty=HLSSignalingData", "placeholder"),
    ("drop=ContentKeyUsageRuleList", "lists"),
])
def test_key_server_faults(ks: KeyServer, fault: str, check: str) -> None:
    req = build_request(BASE)
    body, headers = _answer(ks, req, fault)
    with pytest.raises(CpixValidationError) as ei:
        validate_response(req, parse_cpix(body), headers=headers)
    assert ei.value.check == check, str(ei.value)


# ---- encrypted keys -----------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["A", "B"])
def test_encrypted_answer(ks: KeyServer, pki: Pki, layout: str) -> None:
    dk = DeliveryKey.load(pki.delivery.cert, pki.delivery.key, "s3cret")
    req = build_request(replace(BASE, delivery_cert_der=dk.certificate_der))
    body, headers = _answer(ks, req, f"layout={layout}")
    assert b"PlainValue" not in body and b"EncryptedValue" in body
    keys = validate_response(req, parse_cpix(body), headers=headers, delivery_key=dk)
    for e in keys:
        assert e.key.key == ks.key_for("chan-7", e.kid)
    # wrong delivery key, missing delivery key
    other = DeliveryKey.load(pki.delivery_other.cert, pki.delivery_other.key)
    with pytest.raises(CpixValidationError, match="does not match the certificate"):
        validate_response(req, parse_cpix(body), headers=headers, delivery_key=other)
    with pytest.raises(CpixValidationError, match="no delivery key"):
        validate_response(req, parse_cpix(body), headers=headers)


@pytest.mark.parametrize(("fault", "exc", "check"), [
    ("bad-mac", CpixIntegrityError, None),
    ("plain-key", CpixValidationError, "encryption"),
    ("drop=DeliveryDataList", CpixValidationError, "encryption"),
])
def test_encrypted_answer_faults(ks: KeyServer, pki: Pki, fault: str,
                                 exc: type[Exception], check: str | None) -> None:
    dk = DeliveryKey.load(pki.delivery.cert, pki.delivery.key, "s3cret")
    req = build_request(replace(BASE, delivery_cert_der=dk.certificate_der))
    body, headers = _answer(ks, req, fault)
    with pytest.raises(exc) as ei:
        validate_response(req, parse_cpix(body), headers=headers, delivery_key=dk)
    if check:
        assert getattr(ei.value, "check", None) == check
    else:
        assert getattr(ei.value, "kid", None) == _kid0(req)


def test_encrypted_keys_never_decrypted_with_bad_mac_even_if_plaintext_ok(
        ks: KeyServer, pki: Pki) -> None:
    """Negative control for the MAC-before-decrypt rule: a MAC over other bytes is refused
    although the ciphertext itself decrypts fine."""
    dk = DeliveryKey.load(pki.delivery.cert, pki.delivery.key, "s3cret")
    req = build_request(replace(BASE, delivery_cert_der=dk.certificate_der))
    body, headers = _answer(ks, req)
    macs = etree.fromstring(body).findall(f"{C}ContentKeyList/{C}ContentKey//{P}ValueMAC")
    bad = body.replace(macs[0].text.encode(), macs[1].text.encode(), 1)
    with pytest.raises(CpixIntegrityError, match="MAC"):
        validate_response(req, parse_cpix(bad), headers=headers, delivery_key=dk)


# ---- v1 --------------------------------------------------------------------------------------

def test_v1_answer_builds_signaling(ks: KeyServer) -> None:
    c = EncryptionContract("chan-7", (WV, PR, FP), (Packaging.DASH, Packaging.HLS_FMP4),
                           Scheme.CBCS, SpekeVersion.V1_0, period=KeyPeriod(1700),
                           explicit_iv=False)  # the IV= attribute: next test
    req = build_request(c)
    body, headers = _answer(ks, req)
    keys = validate_response(req, parse_cpix(body), headers=headers)
    (e,) = keys.entries
    assert e.track_type == "ALL" and e.period == KeyPeriod(1700)
    fp = e.signal(FP)
    assert fp and fp.uri_ext_x_key and fp.uri_ext_x_key.startswith("skd://")
    assert fp.key_format == "com.apple.streamingkeydelivery"
    assert fp.hls_media == (f'#EXT-X-KEY:METHOD=SAMPLE-AES,URI="{fp.uri_ext_x_key}",'
                            f'KEYFORMAT="com.apple.streamingkeydelivery",KEYFORMATVERSIONS='
                            f'"{fp.key_format_versions}"')
    assert fp.hls_master and fp.hls_master.startswith("#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,")
    wv, pr = e.signal(WV), e.signal(PR)
    assert wv and wv.pssh and wv.content_protection_data
    assert base64.b64encode(wv.pssh).decode() in wv.content_protection_data
    assert pr and pr.playready_object and "urn:microsoft:playready" in (
        pr.content_protection_data or "")
    check_playready_object(pr.playready_object)
    # v1 ignores the version header; a wrong id is still refused
    bad = body.replace(b'id="chan-7"', b'id="chan-8"')
    with pytest.raises(CpixValidationError) as ei:
        validate_response(req, parse_cpix(bad), headers=headers)
    assert ei.value.check == "content-id"


def test_v1_wrong_keyformat_refused(ks: KeyServer) -> None:
    c = EncryptionContract("chan-7", (FP,), (Packaging.HLS_TS,), Scheme.SAMPLE_AES,
                           SpekeVersion.V1_0)
    req = build_request(c)
    body, headers = _answer(ks, req)
    validate_response(req, parse_cpix(body), headers=headers)
    bad = _mutate(body, lambda r: _b64set(r.find(f".//{{{NS_SPEKE}}}KeyFormat"), b"identity"))
    with pytest.raises(CpixValidationError) as ei:
        validate_response(req, parse_cpix(bad), headers=headers)
    assert ei.value.check == "hls" and ei.value.kid == _kid0(req)


def test_v1_explicit_iv_goes_into_the_line(ks: KeyServer) -> None:
    c = EncryptionContract("chan-7", (AES,), (Packaging.HLS_TS,), Scheme.AES_128,
                           SpekeVersion.V1_0, explicit_iv=True)
    req = build_request(c)
    body, headers = _answer(ks, req)
    (e,) = validate_response(req, parse_cpix(body), headers=headers).entries
    aes = e.signal(AES)
    assert aes and aes.hls_media and e.key.iv == req.keys[0].explicit_iv
    assert f"IV=0x{req.keys[0].explicit_iv.hex().upper()}" in aes.hls_media  # type: ignore[union-attr]
    assert aes.hls_media.startswith("#EXT-X-KEY:METHOD=AES-128,URI=")
    # server changed our IV -> refused
    sent = base64.b64encode(req.keys[0].explicit_iv or b"").decode()
    bad = body.replace(sent.encode(), base64.b64encode(b"\x07" * 16))
    with pytest.raises(CpixValidationError) as ei:
        validate_response(req, parse_cpix(bad), headers=headers)
    assert ei.value.check == "explicit-iv"


def test_playready_object_structure() -> None:
    header = "<WRMHEADER xmlns='x' version='4.0.0.0'/>".encode("utf-16-le")
    good = struct.pack("<IHHH", 10 + len(header), 1, 1, len(header)) + header
    check_playready_object(good)
    for bad in (good[:-1], struct.pack("<IHHH", 10 + len(header), 1, 2, len(header)) + header,
                struct.pack("<IHHH", 10 + 8, 1, 1, 8) + "<OTHER>".encode("utf-16-le")[:8],
                b"\x00" * 4):
        with pytest.raises(CpixValidationError) as ei:
            check_playready_object(bad)
        assert ei.value.check == "playready-pro"
