"""Test-side strict reading of key-server answers (independent of speke_packager.keyserver)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass, field

from lxml import etree

from speke_packager.drm.playready import parse_playready_object
from speke_packager.drm.pssh import parse_pssh
from speke_packager.drm.widevine import parse_widevine_pssh_data

CPIX = "urn:dashif:org:cpix"
PSKC = "urn:ietf:params:xml:ns:keyprov:pskc"
SPEKE = "urn:aws:amazon:com:speke"
NS = {"cpix": CPIX, "pskc": PSKC, "speke": SPEKE, "cenc": "urn:mpeg:cenc:2013",
      "mspr": "urn:microsoft:playready", "dashif": "https://dashif.org/CPS"}
WIDEVINE = uuid.UUID("edef8ba9-79d6-4ace-a3c8-27dcd51d21ed")
PLAYREADY = uuid.UUID("9a04f079-9840-4286-ab92-e65be0885f95")
FAIRPLAY = uuid.UUID("94ce86fb-07ff-4f43-adb8-93d2fa968ca2")
COMMON = uuid.UUID("1077efec-c0b2-4d02-ace3-3c1e52e2fb4b")
DASHIF_CK = uuid.UUID("e2719d58-a985-b3c9-781a-b030af78d30e")
AES_IDS = {uuid.UUID("3ea8778f-7742-4bf9-b18b-e834b2acbd47"),
           uuid.UUID("81376844-f976-481e-a84e-cc25d39b0b33")}
KEYFORMATS = {WIDEVINE: f"urn:uuid:{WIDEVINE}", PLAYREADY: "com.microsoft.playready",
              FAIRPLAY: "com.apple.streamingkeydelivery", COMMON: "org.w3.clearkey",
              DASHIF_CK: "org.w3.clearkey"}


def expected_key(seed: str, content_id: str, kid: uuid.UUID) -> bytes:
    """The documented derivation, computed here without the package."""
    return hmac.new(seed.encode(), f"{content_id}\x00{kid}".encode(), hashlib.sha256).digest()[:16]


def b64(text: str | None) -> bytes:
    assert text and text.strip(), "empty base64 value"
    return base64.b64decode(re.sub(r"\s+", "", text), validate=True)


def hls_attrs(line: str) -> dict[str, str]:
    tag, _, rest = line.partition(":")
    out = {}
    for m in re.finditer(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', rest):
        out[m.group(1)] = m.group(2).strip('"')
    out["_tag"] = tag
    return out


@dataclass
class Checked:
    keys: dict[uuid.UUID, bytes] = field(default_factory=dict)
    encrypted: dict[uuid.UUID, bytes] = field(default_factory=dict)  # kid -> IV||ciphertext
    macs: dict[uuid.UUID, bytes] = field(default_factory=dict)
    signals: dict[tuple[uuid.UUID, uuid.UUID, str], bytes] = field(default_factory=dict)


def check_answer(request: bytes, answer: bytes, *, license_url: str | None = None,
                 key_url_prefix: str | None = None) -> Checked:
    """Assert that ``answer`` completes ``request`` (speke.md §5 rules); return what it holds."""
    req = etree.fromstring(request)
    ans = etree.fromstring(answer)
    assert ans.tag == f"{{{CPIX}}}CPIX"
    v2 = req.get("contentId") is not None and req.get("version") is not None
    if v2:
        assert ans.get("contentId") == req.get("contentId")
        assert ans.get("version") == req.get("version")
    else:
        assert ans.get("id") == req.get("id")
    out = Checked()
    req_keys = {uuid.UUID(k.get("kid")): k for k in req.iterfind("cpix:ContentKeyList/cpix:ContentKey", NS)}
    ans_keys = ans.findall("cpix:ContentKeyList/cpix:ContentKey", NS)
    assert len(ans_keys) == len(req_keys)
    for k in ans_keys:
        kid = uuid.UUID(k.get("kid"))
        assert kid in req_keys
        assert k.get("commonEncryptionScheme") == req_keys[kid].get("commonEncryptionScheme")
        assert k.get("explicitIV") == req_keys[kid].get("explicitIV")
        secrets = k.findall("cpix:Data/pskc:Secret", NS)
        assert len(secrets) == 1
        plain = secrets[0].find("pskc:PlainValue", NS)
        enc = secrets[0].find("pskc:EncryptedValue/{http://www.w3.org/2001/04/xmlenc#}CipherData/"
                              "{http://www.w3.org/2001/04/xmlenc#}CipherValue", NS)
        assert (plain is None) != (enc is None)
        if plain is not None:
            out.keys[kid] = b64(plain.text)
            assert len(out.keys[kid]) == 16
        else:
            assert enc is not None
            out.encrypted[kid] = b64(enc.text)
            mac = secrets[0].find("pskc:ValueMAC", NS)
            assert mac is not None
            out.macs[kid] = b64(mac.text)
            assert len(out.macs[kid]) == 64 and len(out.encrypted[kid]) == 48
    # periods and rules echoed unchanged
    for name in ("ContentKeyPeriodList", "ContentKeyUsageRuleList"):
        r, a = req.find(f"cpix:{name}", NS), ans.find(f"cpix:{name}", NS)
        if r is None:
            assert a is None
        else:
            assert a is not None
            assert [(e.tag, dict(e.attrib)) for e in r.iter()] == [(e.tag, dict(e.attrib)) for e in a.iter()]
    scheme = next(iter(req_keys.values())).get("commonEncryptionScheme")
    ans_drm = {(uuid.UUID(d.get("kid")), uuid.UUID(d.get("systemId"))): d
               for d in ans.iterfind("cpix:DRMSystemList/cpix:DRMSystem", NS)}
    for d in req.iterfind("cpix:DRMSystemList/cpix:DRMSystem", NS):
        kid, sid = uuid.UUID(d.get("kid")), uuid.UUID(d.get("systemId"))
        got = ans_drm.pop((kid, sid))
        _check_drm(d, got, kid, sid, scheme, v2, out, license_url, key_url_prefix)
    assert not ans_drm, f"unrequested DRMSystems {list(ans_drm)}"
    return out


def _names(el: etree._Element) -> list[str]:
    out = []
    for c in el:
        if not isinstance(c.tag, str):
            continue
        q = etree.QName(c)
        name = q.localname if q.namespace == CPIX else f"speke:{q.localname}"
        if q.localname == "HLSSignalingData":
            name += ":" + (c.get("playlist") or "")
        out.append(name)
    return out


def _check_drm(req_el: etree._Element, el: etree._Element, kid: uuid.UUID, sid: uuid.UUID,
               scheme: str | None, v2: bool, out: Checked, license_url: str | None,
               key_url_prefix: str | None) -> None:
    wanted = _names(req_el)
    assert sorted(_names(el)) == sorted(wanted), "answer placeholders differ from the request"
    values: dict[str, bytes] = {}
    for c in el:
        if not isinstance(c.tag, str):
            continue
        q = etree.QName(c)
        key = q.localname if q.namespace == CPIX else f"speke:{q.localname}"
        if q.localname == "HLSSignalingData":
            key += ":" + (c.get("playlist") or "")
        text = c.text or ""
        if not text.strip():
            assert not v2, f"v2 placeholder {key} left empty"
            continue
        values[key] = b64(text)
        out.signals[(kid, sid, key)] = values[key]
    if "PSSH" in values:
        box = parse_pssh(values["PSSH"])
        if sid == WIDEVINE:
            assert box.system_id == WIDEVINE and box.version == 0
            assert parse_widevine_pssh_data(box.data).key_ids == (kid,)
        elif sid == PLAYREADY:
            assert box.system_id == PLAYREADY
            assert parse_playready_object(box.data).kids == (kid,)
        elif sid in (COMMON, DASHIF_CK):
            assert box.system_id == COMMON and box.version == 1 and box.kids == (kid,)
        else:
            assert box.kids == (kid,)
    if "ContentProtectionData" in values:
        frag = etree.fromstring(b"<r>" + values["ContentProtectionData"] + b"</r>")
        pssh_el = frag.find("cenc:pssh", NS)
        assert pssh_el is not None
        if "PSSH" in values:
            assert b64(pssh_el.text) == values["PSSH"]
        if sid == PLAYREADY:
            pro = frag.find("mspr:pro", NS)
            assert pro is not None and parse_playready_object(b64(pro.text)).kids == (kid,)
        if sid in (COMMON, DASHIF_CK):
            laurl = frag.find("dashif:Laurl", NS)
            assert laurl is not None and laurl.get("licenseType") == "EME-1.0"
            if license_url:
                assert laurl.text == license_url
    for key in ("speke:ProtectionHeader", "SmoothStreamingProtectionHeaderData"):
        if key in values:
            assert parse_playready_object(values[key]).kids == (kid,)
    media = values.get("HLSSignalingData:media")
    master = values.get("HLSSignalingData:master")
    if media is not None or master is not None:
        assert media is not None and master is not None
        m, s = media.decode(), master.decode()
        assert m.startswith("#EXT-X-KEY:") and m.endswith("\n") and m.count("\n") == 1
        assert s.startswith("#EXT-X-SESSION-KEY:") and s.endswith("\n")
        am, as_ = hls_attrs(m.strip()), hls_attrs(s.strip())
        for a in ("METHOD", "KEYFORMAT", "KEYFORMATVERSIONS", "URI"):
            assert am[a] == as_[a]
        if sid in AES_IDS:
            assert am["METHOD"] == ("AES-128" if scheme == "cbc1" else "SAMPLE-AES")
            assert am["KEYFORMAT"] == "identity"
            if key_url_prefix:
                assert am["URI"] == f"{key_url_prefix}/keys/{kid.hex}"
        else:
            assert am["METHOD"] == {"cbcs": "SAMPLE-AES", "cenc": "SAMPLE-AES-CTR"}[scheme or ""]
            assert am["KEYFORMAT"] == KEYFORMATS[sid]
        assert am["KEYFORMATVERSIONS"] == "1"
        if sid == FAIRPLAY:
            assert am["URI"] == f"skd://{kid}"
        if sid == WIDEVINE:
            prefix = "data:text/plain;base64,"
            assert am["URI"].startswith(prefix)
            box = parse_pssh(base64.b64decode(am["URI"][len(prefix):]))
            assert parse_widevine_pssh_data(box.data).key_ids == (kid,)
            assert am["KEYID"] == f"0x{kid.hex}"
        if sid == PLAYREADY:
            prefix = "data:text/plain;charset=UTF-16;base64,"
            assert am["URI"].startswith(prefix)
            assert parse_playready_object(base64.b64decode(am["URI"][len(prefix):])).kids == (kid,)
    if "URIExtXKey" in values:
        uri = values["URIExtXKey"].decode()
        if sid == FAIRPLAY:
            assert uri == f"skd://{kid}"
        if sid in AES_IDS and key_url_prefix:
            assert uri == f"{key_url_prefix}/keys/{kid.hex}"
    if "speke:KeyFormat" in values:
        kf = values["speke:KeyFormat"].decode()
        assert kf == ("identity" if sid in AES_IDS else KEYFORMATS[sid])
    if "speke:KeyFormatVersions" in values:
        assert values["speke:KeyFormatVersions"] == b"1"
