"""The one HLS attribute-list reader/writer (speke_packager._hls_attrs) and how each layer
re-raises its errors: keys as CpixError, the key server as ValueError, manifests and verify as
ManifestError."""

from __future__ import annotations

from uuid import UUID

import pytest

from speke_packager._hls_attrs import Quoted, format_attribute_list, parse_attribute_list
from speke_packager.constants import FAIRPLAY, WIDEVINE
from speke_packager.errors import CpixError, ManifestError
from speke_packager.keys.drm_signals import build_hls_line, parse_hls_attributes
from speke_packager.keyserver.signaling import KeyContext, hls_line


def test_reads_quoted_unquoted_and_spaces_around_attributes() -> None:
    text = ' METHOD=SAMPLE-AES, URI="skd://a,b" ,IV=0x00ff,KEYFORMATVERSIONS="1/2",BANDWIDTH=7 '
    assert parse_attribute_list(text) == {"METHOD": "SAMPLE-AES", "URI": "skd://a,b",
                                          "IV": "0x00ff", "KEYFORMATVERSIONS": "1/2",
                                          "BANDWIDTH": "7"}
    assert parse_attribute_list("") == {}
    assert parse_attribute_list('URI="",A=1,') == {"URI": "", "A": "1"}  # as before: trailing ,


@pytest.mark.parametrize("bad", [
    'URI="a\rb"', 'URI="a\nb"',          # line break inside a quoted-string
    'METHOD=AES-128,URI="x',              # unterminated quote
    "METHOD=A,METHOD=B",                  # a name twice
    "method=AES-128", "MET HOD=A", "=A",  # bad names
    'METHOD=AES-128,,URI="x"',            # empty attribute
    "METHOD=AES 128", 'URI="x"y',         # white space or junk in a value
    "METHOD",                             # no value
])
def test_refuses_malformed_lists_with_a_typed_error(bad: str) -> None:
    with pytest.raises(ManifestError, match="HLS attribute") as info:
        parse_attribute_list(bad, line=7, path="p.m3u8")
    assert info.value.line == 7


def test_writer_and_reader_agree() -> None:
    attrs = [("METHOD", "AES-128"), ("URI", Quoted("k,1.bin")), ("IV", bytes(range(16)))]
    text = format_attribute_list(attrs)
    assert parse_attribute_list(text) == {"METHOD": "AES-128", "URI": "k,1.bin",
                                          "IV": "0x000102030405060708090A0B0C0D0E0F"}


def test_keys_reraise_as_cpix_error() -> None:
    assert parse_hls_attributes('#EXT-X-KEY:METHOD=AES-128,URI="k"')["URI"] == "k"
    with pytest.raises(CpixError, match="cannot parse HLS attribute list"):
        parse_hls_attributes('#EXT-X-KEY:METHOD=AES-128,URI="k",URI="j"')
    line = build_hls_line("#EXT-X-KEY", method="SAMPLE-AES", uri="skd://x", keyformat="f",
                          keyformatversions="1", iv=b"\xab" * 16)
    assert line == ('#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://x",IV=0x' + "AB" * 16
                    + ',KEYFORMAT="f",KEYFORMATVERSIONS="1"')
    with pytest.raises(CpixError, match="double quote"):
        build_hls_line("#EXT-X-KEY", method="AES-128", uri='a"b')


def _ctx(system: UUID, key_url: str) -> KeyContext:
    return KeyContext(kid=UUID(int=1), key=bytes(16), scheme="cbcs", system_id=system,
                      content_id="c", explicit_iv=bytes(range(16)), key_url=key_url,
                      license_url="http://l", playready_la_url="http://p")


def test_key_server_lines_keep_their_bytes() -> None:
    """Lower-case KEYID/IV as the key server always wrote them; a bad URI is a ValueError."""
    line = hls_line(_ctx(WIDEVINE, "http://k"), "media")
    assert line.startswith("#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"data:text/plain;base64,")
    assert f",KEYID=0x{UUID(int=1).hex},IV=0x{bytes(range(16)).hex()}," in line
    assert line.endswith(',KEYFORMAT="urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed",'
                         'KEYFORMATVERSIONS="1"\n')
    assert parse_attribute_list(line.split(":", 1)[1])["METHOD"] == "SAMPLE-AES"
    assert "IV=" not in hls_line(_ctx(FAIRPLAY, "http://k"), "master")
    with pytest.raises(ValueError, match="double quote"):
        hls_line(_ctx(UUID(int=5), 'http://k"'), "media")
