"""tests/mpd_structure.py (the MPD check every MPD test runs) accepts valid MPDs and rejects the
broken ones; where ../shared/dash-schema is present, the MPEG-DASH XSD agrees on each case."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from lxml import etree

from speke_packager.constants import NS_CENC, NS_MPD
from tests.conftest import require_shared
from tests.mpd_structure import mpd_problems

GOOD = f"""<MPD xmlns="{NS_MPD}" xmlns:cenc="{NS_CENC}" type="static"
     mediaPresentationDuration="PT5.5S" minBufferTime="PT2S"
     profiles="urn:mpeg:dash:profile:isoff-live:2011">
  <Period id="p0" start="PT0S">
    <AdaptationSet id="1" contentType="video" mimeType="video/mp4" segmentAlignment="true">
      <ContentProtection schemeIdUri="urn:mpeg:dash:mp4protection:2011" value="cbcs"
                         cenc:default_KID="00112233-4455-6677-8899-aabbccddeeff"/>
      <ContentProtection schemeIdUri="urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed">
        <cenc:pssh>AAAAAA==</cenc:pssh>
      </ContentProtection>
      <Role schemeIdUri="urn:mpeg:dash:role:2011" value="main"/>
      <SegmentTemplate timescale="1000" initialization="$RepresentationID$/init.mp4"
                       media="$RepresentationID$/$Time$.m4s" startNumber="1">
        <SegmentTimeline><S t="0" d="2000" r="1"/><S d="1500"/></SegmentTimeline>
      </SegmentTemplate>
      <Representation id="sd" bandwidth="100000" width="640" height="360" codecs="avc1.64001e"/>
    </AdaptationSet>
    <AdaptationSet id="2" contentType="audio" mimeType="audio/mp4">
      <AudioChannelConfiguration
          schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="2"/>
      <Representation id="a" bandwidth="96000" codecs="mp4a.40.2" audioSamplingRate="48000">
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
  </Period>
</MPD>"""

M = f"{{{NS_MPD}}}"


def _first(root: etree._Element, path: str) -> etree._Element:
    el = root.find(path)
    assert el is not None, path
    return el


def _cp_after_representation(r: etree._Element) -> None:
    aset = _first(r, f"{M}Period/{M}AdaptationSet")
    aset.append(_first(aset, f"{M}ContentProtection"))


def _two_templates(r: etree._Element) -> None:
    aset = _first(r, f"{M}Period/{M}AdaptationSet")
    tpl = _first(aset, f"{M}SegmentTemplate")
    tpl.addnext(etree.fromstring(etree.tostring(tpl)))


MUTATIONS: dict[str, Callable[[etree._Element], None]] = {
    "unknown attribute on AdaptationSet":
        lambda r: _first(r, f"{M}Period/{M}AdaptationSet").set("frobnicate", "1"),
    "ContentProtection without schemeIdUri":
        lambda r: _first(r, f".//{M}ContentProtection").attrib.pop("schemeIdUri"),
    "Representation without bandwidth":
        lambda r: _first(r, f".//{M}Representation").attrib.pop("bandwidth"),
    "MPD without minBufferTime": lambda r: r.attrib.pop("minBufferTime"),
    "ContentProtection after Representation": _cp_after_representation,
    "two SegmentTemplates": _two_templates,
    "bandwidth not an integer":
        lambda r: _first(r, f".//{M}Representation").set("bandwidth", "fast"),
    "S@d missing": lambda r: _first(r, f".//{M}S").attrib.pop("d"),
    "duration not xs:duration": lambda r: r.set("mediaPresentationDuration", "5.5"),
    "unknown MPD element in Period":
        lambda r: _first(r, f"{M}Period").append(etree.Element(f"{M}Bogus")),
}


def _good() -> etree._Element:
    return etree.fromstring(GOOD.encode())


def test_good_mpd_passes() -> None:
    assert mpd_problems(_good()) == []


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_broken_mpd_rejected(name: str) -> None:
    root = _good()
    MUTATIONS[name](root)
    assert mpd_problems(root), name


def test_xsd_agrees() -> None:
    """Each case judged the same way by the MPEG-DASH XSD (lxml) and by tests/mpd_structure.py."""
    folder = require_shared("dash-schema")
    xsd = etree.XMLSchema(etree.parse(str(folder / "DASH-MPD.xsd")))
    assert xsd.validate(_good()), xsd.error_log
    for name, mutate in MUTATIONS.items():
        root = _good()
        mutate(root)
        assert not xsd.validate(root), name
        assert mpd_problems(root), name
