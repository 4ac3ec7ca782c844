"""Request shapes: every preset and version, XSD-valid (CPIX 2.3 for v2.0), placeholders per
packaging, deterministic KIDs, contract errors."""

from __future__ import annotations

import base64
import itertools

import pytest
from lxml import etree

from speke_packager.constants import (
    AUDIO_PRESETS,
    NS_CPIX,
    NS_SPEKE,
    VIDEO_PRESETS,
    DrmSystem,
    Packaging,
    Scheme,
    SpekeVersion,
)
from speke_packager.errors import UsageError
from speke_packager.keys.cpix.parse import parse_cpix
from speke_packager.keys.cpix.schema import SCHEMA_DIR, schema_errors
from speke_packager.keys.request import EncryptionContract, build_request, derive_kid
from speke_packager.model import KeyPeriod

C = f"{{{NS_CPIX}}}"
S = f"{{{NS_SPEKE}}}"
WV, PR, FP, CK, AES = (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.FAIRPLAY,
                       DrmSystem.CLEARKEY, DrmSystem.AES128)

PAIRS = [(v, a) for v, a in itertools.product(VIDEO_PRESETS, AUDIO_PRESETS)
         if not ("SHARED" in (v, a) and v != a) and not (v == a == "UNENCRYPTED")]


def _children(el: etree._Element) -> list[str]:
    return [etree.QName(c).localname + (f":{c.get('playlist')}" if c.get("playlist") else "")
            for c in el]


def test_schema_files_shipped() -> None:
    for v in ("2.3", "2.4"):
        for f in ("cpix.xsd", "pskc.xsd", "xenc-schema.xsd", "xmldsig-core-schema.xsd"):
            assert (SCHEMA_DIR / v / f).is_file()


@pytest.mark.parametrize(("video", "audio"), PAIRS)
def test_every_preset_pair_is_xsd_valid_v20(video: str, audio: str) -> None:
    c = EncryptionContract("chan-7", (WV, PR, FP), (Packaging.DASH, Packaging.HLS_FMP4),
                           Scheme.CBCS, SpekeVersion.V2_0, video, audio, period=KeyPeriod(42),
                           explicit_iv=True)
    r = build_request(c)
    assert schema_errors(r.body, "2.3") == []
    root = etree.fromstring(r.body)
    rules = root.findall(f"{C}ContentKeyUsageRuleList/{C}ContentKeyUsageRule")
    types = [x.get("intendedTrackType") for x in rules]
    assert len(types) == len(set(types)) == len(r.keys)
    for rule in rules:
        assert rule[0].tag == f"{C}KeyPeriodFilter"
        assert rule.find(f"{C}VideoFilter") is not None or rule.find(f"{C}AudioFilter") is not None


def test_preset_filters_match_digest_bounds() -> None:
    c = EncryptionContract("c", (WV,), video_preset="PRESET-VIDEO-8",
                           audio_preset="PRESET-AUDIO-3")
    r = build_request(c)
    got = {k.track_type: ([(f.min_pixels, f.max_pixels) for f in k.video_filters],
                          [(f.min_channels, f.max_channels) for f in k.audio_filters])
           for k in r.keys}
    assert got == {
        "SD+HD1": ([(None, 589824), (589825, 921600)], []),
        "HD2": ([(921601, 2073600)], []),
        "UHD1": ([(2073601, 8847360)], []),
        "UHD2": ([(8847361, None)], []),
        "STEREO_AUDIO": ([], [(None, 2)]),
        "MULTICHANNEL_AUDIO_3_6": ([], [(3, 6)]),
        "MULTICHANNEL_AUDIO_7": ([], [(7, None)]),
    }
    counts = {p: len(build_request(EncryptionContract("c", (WV,), video_preset=p,
                                                      audio_preset="UNENCRYPTED")).keys)
              for p in VIDEO_PRESETS if p.startswith("PRESET")}
    assert counts == {"PRESET-VIDEO-1": 1, "PRESET-VIDEO-2": 2, "PRESET-VIDEO-3": 3,
                      "PRESET-VIDEO-4": 4, "PRESET-VIDEO-5": 5, "PRESET-VIDEO-6": 4,
                      "PRESET-VIDEO-7": 3, "PRESET-VIDEO-8": 4}


def test_shared_is_one_all_key_with_bare_filters() -> None:
    r = build_request(EncryptionContract("c", (WV,), video_preset="SHARED",
                                         audio_preset="SHARED"))
    root = etree.fromstring(r.body)
    (rule,) = root.iter(f"{C}ContentKeyUsageRule")
    assert rule.get("intendedTrackType") == "ALL"
    assert [(ch.tag, dict(ch.attrib)) for ch in rule] == [(f"{C}VideoFilter", {}),
                                                          (f"{C}AudioFilter", {})]


@pytest.mark.parametrize(("video", "audio"), [("SHARED", "PRESET-AUDIO-1"),
                                              ("PRESET-VIDEO-1", "SHARED"),
                                              ("UNENCRYPTED", "UNENCRYPTED"),
                                              ("SHARED", "UNENCRYPTED"),
                                              ("PRESET-VIDEO-9", "PRESET-AUDIO-1"),
                                              ("PRESET-VIDEO-1", "PRESET-AUDIO-4")])
def test_bad_preset_pairs_refused(video: str, audio: str) -> None:
    with pytest.raises(UsageError):
        build_request(EncryptionContract("c", (WV,), video_preset=video, audio_preset=audio))


@pytest.mark.parametrize(("drm", "pkg", "version", "expected"), [
    (WV, (Packaging.DASH,), SpekeVersion.V2_0, ["PSSH", "ContentProtectionData"]),
    (PR, (Packaging.DASH,), SpekeVersion.V2_0, ["PSSH", "ContentProtectionData"]),
    (WV, (Packaging.HLS_FMP4,), SpekeVersion.V2_0, ["PSSH", "HLSSignalingData:media",
                                                    "HLSSignalingData:master"]),
    (FP, (Packaging.HLS_FMP4,), SpekeVersion.V2_0, ["HLSSignalingData:media",
                                                    "HLSSignalingData:master"]),
    (FP, (Packaging.HLS_TS,), SpekeVersion.V2_1, ["HLSSignalingData:media",
                                                  "HLSSignalingData:master"]),
    (WV, (Packaging.DASH, Packaging.HLS_FMP4), SpekeVersion.V2_0,
     ["PSSH", "ContentProtectionData", "HLSSignalingData:media", "HLSSignalingData:master"]),
    (FP, (Packaging.DASH, Packaging.HLS_FMP4), SpekeVersion.V2_0,
     ["HLSSignalingData:media", "HLSSignalingData:master"]),
    (WV, (Packaging.DASH,), SpekeVersion.V1_0, ["PSSH"]),
    (PR, (Packaging.DASH,), SpekeVersion.V1_0, ["PSSH", "ProtectionHeader"]),
    (WV, (Packaging.HLS_FMP4,), SpekeVersion.V1_0, ["PSSH"]),
    (FP, (Packaging.HLS_TS,), SpekeVersion.V1_0, ["URIExtXKey", "KeyFormat",
                                                  "KeyFormatVersions"]),
])
def test_exact_placeholders_per_packaging(drm: DrmSystem, pkg: tuple[Packaging, ...],
                                          version: SpekeVersion, expected: list[str]) -> None:
    r = build_request(EncryptionContract("c", (drm,), pkg, Scheme.CBCS, version))
    root = etree.fromstring(r.body)
    systems = root.findall(f"{C}DRMSystemList/{C}DRMSystem")
    assert len(systems) == len(r.keys)
    for s in systems:
        assert s.get("systemId") == str(drm.system_id)
        assert _children(s) == expected
        assert all(not (c.text or "").strip() and len(c) == 0 for c in s)


def test_aes128_hls_ts_v1_and_v2() -> None:
    r1 = build_request(EncryptionContract("c", (AES,), (Packaging.HLS_TS,), Scheme.AES_128,
                                          SpekeVersion.V1_0))
    r2 = build_request(EncryptionContract("c", (AES,), (Packaging.HLS_TS,), Scheme.AES_128,
                                          SpekeVersion.V2_0, audio_preset="UNENCRYPTED"))
    assert schema_errors(r2.body) == []
    root = etree.fromstring(r2.body)
    assert root.find(f"{C}ContentKeyList/{C}ContentKey").get("commonEncryptionScheme") == "cbc1"
    d1 = parse_cpix(r1.body)
    assert [e.name for e in d1.drm_systems[0].elements] == ["URIExtXKey", "KeyFormat",
                                                            "KeyFormatVersions"]


def test_v1_shape() -> None:
    c = EncryptionContract("chan-7", (WV, FP), (Packaging.DASH, Packaging.HLS_FMP4),
                           version=SpekeVersion.V1_0, period=KeyPeriod(1700))
    r = build_request(c)
    assert "x-speke-version" not in {k.lower() for k in r.headers}
    root = etree.fromstring(r.body)
    assert root.get("id") == "chan-7" and root.get("contentId") is None
    assert root.get("version") is None
    assert root.nsmap["speke"] == NS_SPEKE
    assert [etree.QName(c).localname for c in root] == [
        "ContentKeyList", "DRMSystemList", "ContentKeyPeriodList", "ContentKeyUsageRuleList"]
    (key,) = root.findall(f"{C}ContentKeyList/{C}ContentKey")
    assert key.get("commonEncryptionScheme") is None and len(key) == 0
    (rule,) = root.iter(f"{C}ContentKeyUsageRule")
    assert rule.get("intendedTrackType") is None
    assert [(c.tag, c.get("periodId")) for c in rule] == [(f"{C}KeyPeriodFilter",
                                                           "keyPeriod_1700")]
    (period,) = root.iter(f"{C}ContentKeyPeriod")
    assert dict(period.attrib) == {"id": "keyPeriod_1700", "index": "1700"}
    fp = next(s for s in root.iter(f"{C}DRMSystem") if s.get("systemId") == str(FP.system_id))
    assert [c.tag for c in fp] == [f"{C}URIExtXKey", f"{S}KeyFormat", f"{S}KeyFormatVersions"]
    # v1 is exactly one key whatever the presets say
    r2 = build_request(EncryptionContract("chan-7", (WV,), version=SpekeVersion.V1_0,
                                          video_preset="PRESET-VIDEO-5"))
    assert len(r2.keys) == 1 and r2.keys[0].track_type == "ALL"


def test_v2_headers_and_root() -> None:
    r = build_request(EncryptionContract("chan-7", (WV,)))
    assert dict(r.headers)["x-speke-version"] == "2.0"
    assert "x-speke-version" in r.headers  # lower-case name, exactly
    root = etree.fromstring(r.body)
    assert (root.get("contentId"), root.get("version"), root.get("id")) == ("chan-7", "2.3", None)
    r21 = build_request(EncryptionContract("chan-7", (WV,), version=SpekeVersion.V2_1))
    assert dict(r21.headers)["x-speke-version"] == "2.1"
    assert etree.fromstring(r21.body).get("version") == "2.4"


def test_v21_periods_with_times_and_24_schema() -> None:
    p = KeyPeriod(7, start="2025-01-01T00:42:00Z", end="2025-01-01T00:43:00Z")
    c = EncryptionContract("chan-7", (WV, FP), (Packaging.HLS_FMP4,), version=SpekeVersion.V2_1,
                           period=p)
    r = build_request(c)
    root = etree.fromstring(r.body)
    (period,) = root.iter(f"{C}ContentKeyPeriod")
    assert dict(period.attrib) == {"id": "keyPeriod_7", "index": "7",
                                   "start": "2025-01-01T00:42:00Z", "end": "2025-01-01T00:43:00Z"}
    # AWS sends playlist="master"; CPIX 2.4's XSD renamed it multiVariant: validate with that
    assert schema_errors(r.body, "2.4")  # 'master' is rejected by the 2.4 XSD, as documented
    fixed = r.body.replace(b'playlist="master"', b'playlist="multiVariant"')
    assert schema_errors(fixed, "2.4") == []
    with pytest.raises(UsageError):
        build_request(EncryptionContract("chan-7", (WV,), version=SpekeVersion.V2_0, period=p))


def test_delivery_cert_and_explicit_iv() -> None:
    der = b"\x30\x82fake-der"
    ivs = iter([bytes([i]) * 16 for i in range(1, 10)])
    c = EncryptionContract("c", (WV,), delivery_cert_der=der, explicit_iv=True)
    r = build_request(c, iv_source=lambda n: next(ivs))
    root = etree.fromstring(r.body)
    cert = root.find(f"{C}DeliveryDataList/{C}DeliveryData/{C}DeliveryKey")
    assert cert is not None
    assert base64.b64decode("".join(cert.itertext()).strip()) == der
    assert root[0].tag == f"{C}DeliveryDataList"
    # documented: a DeliveryData without DocumentKey is not XSD-valid; that is the only error
    errs = schema_errors(r.body)
    assert len(errs) == 1 and "DocumentKey" in errs[0]
    keys = root.findall(f"{C}ContentKeyList/{C}ContentKey")
    assert [base64.b64decode(k.get("explicitIV")) for k in keys] == [b"\x01" * 16, b"\x02" * 16]
    assert [k.explicit_iv for k in r.keys] == [b"\x01" * 16, b"\x02" * 16]
    # without explicit_iv nothing is sent; real randomness gives distinct IVs
    assert etree.fromstring(build_request(EncryptionContract("c", (WV,))).body).find(
        f"{C}ContentKeyList/{C}ContentKey").get("explicitIV") is None
    r2 = build_request(EncryptionContract("c", (WV,), explicit_iv=True))
    assert len({k.explicit_iv for k in r2.keys}) == 2


def test_kids_are_deterministic_and_distinct() -> None:
    c = EncryptionContract("chan-7", (WV,), video_preset="PRESET-VIDEO-5",
                           audio_preset="PRESET-AUDIO-3", period=KeyPeriod(3))
    a, b = build_request(c), build_request(c)
    assert a.kids == b.kids and a.body == b.body
    assert len(set(a.kids)) == 8
    other = build_request(EncryptionContract("chan-7", (WV,), video_preset="PRESET-VIDEO-5",
                                             audio_preset="PRESET-AUDIO-3", period=KeyPeriod(4)))
    assert not set(a.kids) & set(other.kids)
    assert derive_kid("chan-7", "SD", 3) in a.kids
    assert derive_kid("chan-8", "SD", 3) not in a.kids
    for k in a.kids:
        assert str(k) == str(k).lower()


@pytest.mark.parametrize("kw", [
    {"content_id": "7chan"}, {"content_id": "a b"}, {"content_id": "x/y"}, {"content_id": ""},
    {"drm": ()}, {"drm": (WV, WV)},
    {"drm": (FP,), "scheme": Scheme.CENC, "packaging": (Packaging.HLS_FMP4,)},
    {"drm": (FP,), "packaging": (Packaging.DASH,)},
    {"drm": (WV,), "packaging": (Packaging.HLS_TS,)},
    {"drm": (WV,), "scheme": Scheme.AES_128},
    {"drm": (WV,), "scheme": Scheme.SAMPLE_AES, "packaging": (Packaging.DASH,)},
    {"drm": (WV,), "period": KeyPeriod(-1)},
    {"drm": (WV,), "period": KeyPeriod(1, id="1bad")},
    {"drm": (WV,), "packaging": ()},
])
def test_contract_errors(kw: dict[str, object]) -> None:
    base: dict[str, object] = {"content_id": "chan-7", "drm": (WV,)}
    base.update(kw)
    with pytest.raises(UsageError):
        build_request(EncryptionContract(**base))  # type: ignore[arg-type]


def test_roundtrip_parse_of_request() -> None:
    c = EncryptionContract("chan-7", (WV, PR, CK), video_preset="PRESET-VIDEO-2",
                           audio_preset="PRESET-AUDIO-2", period=KeyPeriod(9))
    r = build_request(c)
    doc = parse_cpix(r.body)
    assert doc.content_id == "chan-7" and doc.version == "2.3"
    assert [ck.kid for ck in doc.content_keys] == [str(k) for k in r.kids]
    assert {r.intended_track_type for r in doc.usage_rules} == {"SD", "HD", "STEREO_AUDIO",
                                                               "MULTICHANNEL_AUDIO"}
    assert doc.periods[0].index == 9
    assert [ru.video_filters for ru in doc.usage_rules] == [k.video_filters for k in r.keys]
    assert len(doc.drm_systems) == 12
