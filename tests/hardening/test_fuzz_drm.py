"""Fuzzing of what the key server and the DRM layer read from outside: pssh boxes, PlayReady
objects, WidevinePsshData, SPEKE requests (v1 and v2) and ClearKey licence requests."""

from __future__ import annotations

from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speke_packager.constants import Scheme
from speke_packager.drm.playready import build_playready_object, parse_playready_object
from speke_packager.drm.pssh import build_pssh, parse_pssh, split_pssh_boxes
from speke_packager.drm.widevine import build_widevine_pssh_data, parse_widevine_pssh_data
from speke_packager.keyserver.clearkey import parse_license_request
from speke_packager.keyserver.request import parse_request
from tests.conftest import shared_folder
from tests.cpix_seeds import speke_request_seeds

from .conftest import FUZZ, apply, mutations, typed_only

pytestmark = pytest.mark.timeout(300)

KIDS = [UUID(int=0x51), UUID(int=0x52)]
PRO = build_playready_object([(KIDS[0], b"\x01" * 16), (KIDS[1], b"\x02" * 16)],
                             la_url="https://pr.example/rightsmanager.asmx", scheme=Scheme.CBCS)
WV = build_widevine_pssh_data(KIDS, content_id=b"movie-1", provider="p",
                              protection_scheme="cbcs")
PSSH = [build_pssh(UUID("edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"), WV, kids=KIDS, version=1),
        build_pssh(UUID("9a04f079-9840-4286-ab92-e65be0885f95"), PRO)]
LICENCE = b'{"kids":["AAAAAAAAAAAAAAAAAAAAUQ","AAAAAAAAAAAAAAAAAAAAUg"],"type":"temporary"}'


def test_seeds_parse() -> None:
    assert parse_playready_object(PRO)
    assert parse_widevine_pssh_data(WV)
    assert [parse_pssh(b).system_id for b in PSSH]
    assert len(split_pssh_boxes(b"".join(PSSH))) == 2
    assert parse_license_request(LICENCE)[0] == KIDS


@FUZZ
@given(blob=st.builds(apply, st.sampled_from([PRO, WV, *PSSH, b"".join(PSSH)]), mutations))
def test_fuzz_drm_parsers(blob: bytes) -> None:
    typed_only(lambda: parse_playready_object(blob))
    typed_only(lambda: parse_widevine_pssh_data(blob))
    typed_only(lambda: parse_pssh(blob))
    typed_only(lambda: split_pssh_boxes(blob))


@FUZZ
@given(data=st.data())
def test_fuzz_speke_request(data: st.DataObject) -> None:
    shared = shared_folder("cpix-samples")  # the public requests too, when present
    public = sorted(shared.glob("speke-reference-server*.xml")) if shared else []
    seeds = [*speke_request_seeds(), *(p.read_bytes() for p in public)]
    body = apply(data.draw(st.sampled_from(seeds)), data.draw(mutations))
    version = data.draw(st.sampled_from([None, "2.0", "2.1", "3", ""]))
    typed_only(lambda: parse_request(body, version, max_bytes=1 << 20))


@FUZZ
@given(body=st.one_of(st.builds(apply, st.just(LICENCE), mutations),
                      st.binary(max_size=300)))
def test_fuzz_licence_request(body: bytes) -> None:
    typed_only(lambda: parse_license_request(body))
