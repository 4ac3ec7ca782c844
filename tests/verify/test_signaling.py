"""Unit checks of verify's readers: HLS attribute lists, box walker, PlayReady KID byte order."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import pytest

from speke_packager._hls_attrs import parse_attribute_list
from speke_packager.constants import PLAYREADY, WIDEVINE, Scheme
from speke_packager.drm.playready import build_playready_object
from speke_packager.drm.pssh import Pssh
from speke_packager.drm.widevine import build_widevine_pssh_data
from speke_packager.errors import ManifestError, Mp4FormatError
from speke_packager.verify.boxes import read_mp4_facts
from speke_packager.verify.checks import pssh_checks
from speke_packager.verify.report import RenditionReport
from speke_packager.verify.signaling import decode_data_uri, parse_hex_kid
from tests.e2e.packages import KEY, KID, shaka_dash


def test_attribute_list() -> None:
    attrs = parse_attribute_list('METHOD=SAMPLE-AES,URI="skd://a,b",IV=0x00ff,KEYFORMATVERSIONS="1/2"')
    assert attrs == {"METHOD": "SAMPLE-AES", "URI": "skd://a,b", "IV": "0x00ff",
                     "KEYFORMATVERSIONS": "1/2"}
    for bad in ('METHOD=AES-128,,URI="x"', 'METHOD=AES-128,URI="x', "METHOD=A,METHOD=B",
                "method=AES-128"):
        with pytest.raises(ManifestError):
            parse_attribute_list(bad, line=7)
    assert parse_hex_kid(f"0x{KID.hex}") == KID
    with pytest.raises(ManifestError):
        parse_hex_kid("0x1234")
    assert decode_data_uri("data:text/plain;base64,AAEC") == b"\x00\x01\x02"


def test_box_walker_reads_tenc_and_pssh(tmp_path: Path, media: Callable[[str], Path]) -> None:
    shaka_dash(media("h264-aac-mp4"), tmp_path / "p", "cbcs")
    facts = read_mp4_facts((tmp_path / "p" / "v" / "init.mp4").read_bytes())
    (tenc,) = [t for entries in facts.tracks.values() for t in entries]
    assert (tenc.scheme, tenc.original_format, tenc.kid) == ("cbcs", "avc1", KID)
    assert (tenc.crypt_byte_block, tenc.skip_byte_block, len(tenc.constant_iv)) == (1, 9, 16)
    assert facts.pssh and all(KID in p.kids for p in facts.pssh if p.version == 1)
    seg = (tmp_path / "p" / "v" / "1.m4s").read_bytes()
    assert read_mp4_facts(seg).senc_fragments == 1
    with pytest.raises(Mp4FormatError):
        read_mp4_facts(seg[:-7] + b"\xff" * 3)  # a box claiming more bytes than there are


@pytest.mark.parametrize("swapped", [False, True])
def test_playready_kid_byte_order(swapped: bool) -> None:
    kid_in_header = UUID(bytes=KID.bytes_le) if swapped else KID  # GUID swap applied twice
    pro = build_playready_object([(kid_in_header, KEY)], la_url="https://pr.example/",
                                 scheme=Scheme.CENC)
    rep = RenditionReport("r", "m", "fmp4")
    pssh_checks(rep, "box", [Pssh(PLAYREADY, 0, (), pro)], KID)
    assert rep.ok is (not swapped)
    if swapped:
        assert "GUID byte order" in rep.checks[0].detail


def test_widevine_kid_mismatch() -> None:
    other = UUID("ffeeddcc-bbaa-9988-7766-554433221100")
    rep = RenditionReport("r", "m", "fmp4")
    data = build_widevine_pssh_data([other], content_id=b"c")
    pssh_checks(rep, "mpd", [Pssh(WIDEVINE, 0, (), data)], KID)
    assert not rep.ok and str(other) in rep.checks[0].detail
