"""DASH MPD reader/writer: segments found, ContentProtection placed and schema-valid."""

from __future__ import annotations

import base64
from uuid import UUID

import pytest
from lxml import etree

from speke_packager.constants import (
    DASHIF_CLEARKEY,
    NS_CENC,
    NS_DASHIF_CPS,
    NS_MPD,
    NS_MSPR,
    PLAYREADY,
    W3C_COMMON,
    WIDEVINE,
    DrmSystem,
    Scheme,
)
from speke_packager.drm.pssh import build_pssh
from speke_packager.errors import ManifestError
from speke_packager.manifests import dash
from speke_packager.model import DrmSignal
from tests.mpd_structure import MpdCheck

NS = {"m": NS_MPD, "cenc": NS_CENC, "mspr": NS_MSPR, "dashif": NS_DASHIF_CPS}
KID = UUID("00112233-4455-6677-8899-aabbccddeeff")
KID2 = UUID("99112233-4455-6677-8899-aabbccddeeff")

MPD = f"""<?xml version="1.0"?>
<MPD xmlns="{NS_MPD}" type="static" mediaPresentationDuration="PT5S" minBufferTime="PT2S"
     profiles="urn:mpeg:dash:profile:isoff-live:2011">
  <!-- a comment that must survive -->
  <Period id="p0">
    <BaseURL>media/</BaseURL>
    <AdaptationSet id="1" contentType="video" mimeType="video/mp4">
      <Role schemeIdUri="urn:mpeg:dash:role:2011" value="main"/>
      <SegmentTemplate timescale="1000" initialization="$RepresentationID$/init.mp4"
                       media="$RepresentationID$/$Time$.m4s">
        <SegmentTimeline><S t="0" d="2000" r="1"/><S d="1000"/></SegmentTimeline>
      </SegmentTemplate>
      <Representation id="sd" bandwidth="100000" width="640" height="360" codecs="avc1.64001e"/>
      <Representation id="hd" bandwidth="900000" width="1280" height="720" codecs="avc1.64001f"/>
    </AdaptationSet>
    <AdaptationSet id="2" contentType="audio" mimeType="audio/mp4">
      <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="2"/>
      <Role schemeIdUri="urn:mpeg:dash:role:2011" value="main"/>
      <Representation id="a" bandwidth="96000" codecs="mp4a.40.2">
        <SegmentList timescale="48000" duration="96000">
          <Initialization sourceURL="a/init.mp4"/>
          <SegmentURL media="a/1.m4s"/><SegmentURL media="a/2.m4s"/>
        </SegmentList>
      </Representation>
      <Representation id="b" bandwidth="96000" codecs="mp4a.40.2">
        <BaseURL>b.mp4</BaseURL>
        <SegmentBase indexRange="800-899"><Initialization range="0-799"/></SegmentBase>
      </Representation>
    </AdaptationSet>
    <AdaptationSet id="3" contentType="text" mimeType="application/mp4">
      <Representation id="t" bandwidth="1000" codecs="stpp">
        <SegmentTemplate duration="2" startNumber="5" media="t/$Number%03d$.m4s"/>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
""".encode()


def test_segments_of_every_addressing_mode() -> None:
    reps = {r.representation.get("id"): r for r in dash.representation_segments(dash.parse_mpd(MPD))}
    sd = reps["sd"]
    assert sd.init and sd.init.url == "media/sd/init.mp4"
    assert [m.url for m in sd.media] == ["media/sd/0.m4s", "media/sd/2000.m4s",
                                         "media/sd/4000.m4s"]
    assert sd.starts == [0.0, 2.0, 4.0]
    a = reps["a"]
    assert a.addressing == "list" and [m.url for m in a.media] == ["media/a/1.m4s",
                                                                     "media/a/2.m4s"]
    b = reps["b"]
    assert b.addressing == "base" and b.init and b.init.byterange == (0, 799)
    assert b.index and b.index.byterange == (800, 899) and b.media[0].url == "media/b.mp4"
    t = reps["t"]
    assert [m.url for m in t.media] == ["media/t/005.m4s", "media/t/006.m4s", "media/t/007.m4s"]
    b.index.slot.set(10, 20)  # type: ignore[union-attr]
    assert b"indexRange=\"10-20\"" in dash.render_mpd(b.representation.getroottree().getroot())


def test_protect_split_and_validate(check_mpd: MpdCheck) -> None:
    root = dash.parse_mpd(MPD)
    reps = {r.representation.get("id"): r for r in dash.representation_segments(root)}
    video = reps["sd"].adaptation_set
    sets = dash.split_adaptation_set(video, [[reps["sd"].representation],
                                             [reps["hd"].representation]])
    assert [s.get("id") for s in sets] == ["1", "4"]
    wv = build_pssh(WIDEVINE, b"\x12\x10" + KID.bytes)
    pro = "<WRMHEADER/>".encode("utf-16-le")
    sig = [DrmSignal(DrmSystem.WIDEVINE, WIDEVINE, pssh=wv),
           DrmSignal(DrmSystem.PLAYREADY, PLAYREADY, pssh=build_pssh(PLAYREADY, pro)),
           DrmSignal(DrmSystem.FAIRPLAY, UUID(int=3), uri_ext_x_key="skd://x")]
    dash.add_content_protection(sets[0], dash.content_protections(KID, Scheme.CBCS, sig))
    dash.add_content_protection(sets[1], dash.content_protections(
        KID2, Scheme.CBCS, [], clearkey_license_url="https://k/ck?a=1&b=2"))
    audio = reps["a"].adaptation_set
    dash.add_content_protection(audio, dash.content_protections(KID, Scheme.CBCS, sig[:1]))
    out = dash.render_mpd(root)
    doc = etree.fromstring(out)
    check_mpd(doc)
    assert b"a comment that must survive" in out
    asets = doc.findall(".//m:AdaptationSet", NS)
    assert [a.get("id") for a in asets] == ["1", "4", "2", "3"]
    assert [r.get("id") for r in asets[0].findall("m:Representation", NS)] == ["sd"]
    assert [r.get("id") for r in asets[1].findall("m:Representation", NS)] == ["hd"]
    cps = asets[0].findall("m:ContentProtection", NS)
    assert [c.get("schemeIdUri") for c in cps] == [
        "urn:mpeg:dash:mp4protection:2011", f"urn:uuid:{WIDEVINE}", f"urn:uuid:{PLAYREADY}"]
    assert cps[0].get(f"{{{NS_CENC}}}default_KID") == str(KID) and cps[0].get("value") == "cbcs"
    assert base64.b64decode(cps[1].findtext("cenc:pssh", namespaces=NS) or "") == wv
    assert base64.b64decode(cps[2].findtext("mspr:pro", namespaces=NS) or "") == pro
    ck = asets[1].findall("m:ContentProtection", NS)
    assert ck[0].get(f"{{{NS_CENC}}}default_KID") == str(KID2)
    laurl = ck[1].find("dashif:Laurl", NS)
    assert laurl is not None and laurl.text == "https://k/ck?a=1&b=2"
    assert laurl.get("licenseType") == "EME-1.0"
    # dash.js rejects a pssh inside the DASH-IF ClearKey descriptor: the init segment has it
    assert ck[1].find("cenc:pssh", NS) is None
    # ContentProtection after AudioChannelConfiguration, before Role
    names = [etree.QName(c).localname for c in asets[2] if isinstance(c.tag, str)]
    assert names[:3] == ["AudioChannelConfiguration", "ContentProtection", "ContentProtection"][:3]
    assert names.index("Role") > names.index("ContentProtection")


def test_cpd_fragment_kept_verbatim(check_mpd: MpdCheck) -> None:
    root = dash.parse_mpd(MPD)
    cpd = f'<cenc:pssh xmlns:cenc="{NS_CENC}">QUJD</cenc:pssh><x:extra xmlns:x="urn:x" a="1"/>'
    aset = root.find(".//m:AdaptationSet", NS)
    assert aset is not None
    dash.add_content_protection(aset, dash.content_protections(
        KID, Scheme.CENC, [DrmSignal(DrmSystem.WIDEVINE, WIDEVINE, content_protection_data=cpd)]))
    doc = etree.fromstring(dash.render_mpd(root))
    check_mpd(doc)
    cp = doc.findall(".//m:ContentProtection", NS)[1]
    assert cp.findtext("cenc:pssh", namespaces=NS) == "QUJD"
    assert cp.find("{urn:x}extra").get("a") == "1"  # type: ignore[union-attr]


@pytest.mark.parametrize("data, why", [
    (b"<x/>", "not a DASH MPD"),
    (MPD.replace(b"<Role", b"<ContentProtection schemeIdUri='x'/><Role", 1), "already protected"),
    (b"<!DOCTYPE x [<!ENTITY a 'b'>]><MPD/>", "DTD"),
    (b"<MPD", "well-formed"),
    (MPD.replace(b"<BaseURL>media/", b"<BaseURL>https://cdn.example/"), "remote BaseURL"),
])
def test_bad_mpds(data: bytes, why: str) -> None:
    with pytest.raises(ManifestError, match=why):
        dash.representation_segments(dash.parse_mpd(data))


def test_aes128_cannot_go_to_dash() -> None:
    with pytest.raises(ManifestError, match="cenc or cbcs"):
        dash.content_protections(KID, Scheme.AES_128, [])


def test_clearkey_cpd_from_key_server_loses_only_its_pssh() -> None:
    cpd = ('<cenc:pssh xmlns:cenc="urn:mpeg:cenc:2013">AAAANHBzc2gBAAAAEHfv7MCyTQKs4zweUuL7SwAAAAEAESIz'
           'RFVmd4iZqrvM3e7/AAAAAA==</cenc:pssh>'
           '<dashif:Laurl xmlns:dashif="https://dashif.org/CPS" licenseType="EME-1.0">'
           'http://127.0.0.1:1/clearkey/license</dashif:Laurl>')
    sig = DrmSignal(DrmSystem.CLEARKEY, W3C_COMMON, content_protection_data=cpd)
    cps = dash.content_protections(KID, Scheme.CENC, [sig])
    ck = cps[1]
    assert ck.get("schemeIdUri") == f"urn:uuid:{DASHIF_CLEARKEY}"
    assert ck.find("cenc:pssh", NS) is None
    laurl = ck.find("dashif:Laurl", NS)
    assert laurl is not None and laurl.text == "http://127.0.0.1:1/clearkey/license"
