"""Widevine PSSH data and PlayReady objects: round trips, hand-checked bytes, and data produced
by Shaka Packager (an independent implementation) parsed back to the right KIDs."""

from __future__ import annotations

import base64
import struct
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from fixtures.media import packager_key_flags
from speke_packager._tools import PACKAGER, find_tool
from speke_packager.constants import PLAYREADY, WIDEVINE, Scheme
from speke_packager.drm.playready import (
    PlayReadyError,
    build_playready_object,
    parse_playready_object,
    playready_checksum,
)
from speke_packager.drm.pssh import parse_pssh
from speke_packager.drm.widevine import (
    WidevineDataError,
    build_widevine_pssh_data,
    parse_widevine_pssh_data,
)

KID1 = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
KID2 = uuid.UUID("0b7e4a52-1c3d-4e5f-8a9b-00000000a002")
KEY1 = bytes(range(16))
KEY2 = bytes(range(16, 32))


# --- Widevine ---------------------------------------------------------------------------------
def test_widevine_bytes_by_hand() -> None:
    data = build_widevine_pssh_data([KID1], content_id=b"abc", provider="p",
                                    protection_scheme="cbcs")
    # field 2 (0x12) len 16, field 3 (0x1a) len 1, field 4 (0x22) len 3, field 9 varint (0x48)
    cbcs = int.from_bytes(b"cbcs", "big")
    varint = bytearray()
    v = cbcs
    while v > 0x7F:
        varint.append(v & 0x7F | 0x80)
        v >>= 7
    varint.append(v)
    expected = (b"\x12\x10" + KID1.bytes + b"\x1a\x01p" + b"\x22\x03abc" + b"\x48"
                + bytes(varint))
    assert data == expected


def test_widevine_round_trip_many_kids() -> None:
    data = build_widevine_pssh_data([KID1, KID2], content_id=b"chan-7", provider="speke",
                                    protection_scheme="cenc")
    parsed = parse_widevine_pssh_data(data)
    assert parsed.key_ids == (KID1, KID2)
    assert parsed.content_id == b"chan-7"
    assert parsed.provider == "speke"
    assert parsed.protection_scheme == "cenc"


def test_widevine_skips_unknown_fields() -> None:
    extra = b"\x08\x01" + b"\x3a\x02hi" + b"\x55\x00\x00\x00\x00"  # field 1 varint, 7 bytes, 10 fixed32
    parsed = parse_widevine_pssh_data(extra + build_widevine_pssh_data([KID2]))
    assert parsed.key_ids == (KID2,)


@pytest.mark.parametrize("bad", [b"\x12\x10" + b"\x00" * 15, b"\x12\x05abcde", b"\x12",
                                 b"\x0b\x00", b"\x00\x00", b"\x48" + b"\xff" * 11])
def test_widevine_malformed(bad: bytes) -> None:
    with pytest.raises(WidevineDataError):
        parse_widevine_pssh_data(bad)


# --- PlayReady --------------------------------------------------------------------------------
def test_playready_kid_is_little_endian_guid() -> None:
    pro = build_playready_object([(KID1, KEY1)], la_url="https://lic.example/pr", scheme=Scheme.CENC)
    total, count, rtype, rlen = struct.unpack_from("<IHHH", pro)
    assert total == len(pro) and count == 1 and rtype == 1 and rlen == len(pro) - 10
    xml = pro[10:].decode("utf-16-le")
    assert xml.startswith("<WRMHEADER")
    # digest example: 00112233-... -> MyIRAFVEd2aImaq7zN3u/w==
    assert "<KID>MyIRAFVEd2aImaq7zN3u/w==</KID>" in xml
    header = parse_playready_object(pro)
    assert header.version == "4.0.0.0"
    assert header.kids == (KID1,)
    assert header.la_url == "https://lic.example/pr"
    assert header.algid == "AESCTR"
    assert header.checksums == (playready_checksum(KID1, KEY1),)


def test_playready_checksum_independent() -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.AES(KEY1), modes.ECB()).encryptor()
    assert playready_checksum(KID1, KEY1) == (enc.update(KID1.bytes_le) + enc.finalize())[:8]
    assert playready_checksum(KID1, KEY2) != playready_checksum(KID1, KEY1)


def test_playready_cbcs_is_4_3() -> None:
    pro = build_playready_object([(KID1, KEY1), (KID2, KEY2)], la_url="u", scheme=Scheme.CBCS)
    header = parse_playready_object(pro)
    assert header.version == "4.3.0.0"
    assert header.kids == (KID1, KID2)
    assert header.algid == "AESCBC"
    assert 'ALGID="AESCBC"' in header.xml and "CHECKSUM" not in header.xml


def test_playready_cenc_multi_key_is_4_2() -> None:
    header = parse_playready_object(build_playready_object([(KID1, KEY1), (KID2, KEY2)],
                                                           la_url="u", scheme=Scheme.CENC))
    assert header.version == "4.2.0.0"
    assert header.kids == (KID1, KID2)
    assert header.checksums == (playready_checksum(KID1, KEY1), playready_checksum(KID2, KEY2))


def test_playready_malformed() -> None:
    good = build_playready_object([(KID1, KEY1)], la_url="u", scheme=Scheme.CENC)
    for bad in (good[:-2], b"\x00" * 12, struct.pack("<I", len(good) + 1) + good[4:],
                good[:6] + struct.pack("<HH", 1, 4) + b"<\x00W\x00" + good[14:][:0]):
        with pytest.raises(PlayReadyError):
            parse_playready_object(bad)
    with pytest.raises(PlayReadyError):
        build_playready_object([], la_url="u", scheme=Scheme.CENC)
    with pytest.raises(PlayReadyError):
        build_playready_object([(KID1, KEY1)], la_url="u", scheme=Scheme.AES_128)


# --- an independent producer: Shaka Packager --------------------------------------------------
@pytest.mark.interop
def test_shaka_packager_data_parses(media: Callable[[str], Path], tmp_path: Path) -> None:
    packager = find_tool("packager", PACKAGER)
    assert packager
    src = media("h264-fmp4")
    mpd = tmp_path / "out.mpd"
    subprocess.run(
        [packager, f"in={src},stream=video,output={tmp_path / 'v.mp4'}",
         "--enable_raw_key_encryption", "--protection_scheme", "cenc",
         packager_key_flags(f"--keys=label=:key_id={KID1.hex}:key={KEY1.hex()}"),
         "--protection_systems", "Widevine,PlayReady",
         "--mpd_output", str(mpd)],
        check=True, capture_output=True, timeout=120)
    root = etree.parse(str(mpd)).getroot()
    ns = {"m": "urn:mpeg:dash:schema:mpd:2011", "cenc": "urn:mpeg:cenc:2013",
          "mspr": "urn:microsoft:playready"}
    found = {}
    pro_checked = False
    for cp in root.iterfind(".//m:ContentProtection", ns):
        scheme = (cp.get("schemeIdUri") or "").lower()
        pssh = cp.find("cenc:pssh", ns)
        if pssh is not None:
            found[scheme] = parse_pssh(base64.b64decode(pssh.text or ""))
        pro = cp.find("mspr:pro", ns)
        if pro is not None:
            header = parse_playready_object(base64.b64decode(pro.text or ""))
            assert header.kids == (KID1,)
            assert header.version == "4.0.0.0"
            assert header.checksums == (playready_checksum(KID1, KEY1),)
            ours = parse_playready_object(build_playready_object(
                [(KID1, KEY1)], la_url="https://x.test/pr", scheme=Scheme.CENC))
            assert (ours.version, ours.kids, ours.algid, ours.checksums) == \
                (header.version, header.kids, header.algid, header.checksums)
            pro_checked = True
    wv = found[f"urn:uuid:{WIDEVINE}"]
    parsed = parse_widevine_pssh_data(wv.data)
    assert parsed.key_ids == (KID1,)
    assert parsed.protection_scheme == "cenc"
    # byte-for-byte what Shaka Packager writes for the same fields
    assert build_widevine_pssh_data(parsed.key_ids, content_id=parsed.content_id,
                                    provider=parsed.provider,
                                    protection_scheme=parsed.protection_scheme) == wv.data
    pr = found[f"urn:uuid:{PLAYREADY}"]
    assert parse_playready_object(pr.data).kids == (KID1,)
    assert pro_checked  # the MPD carried a PlayReady object and it matched ours
    # negative control: another KID's data does not match
    assert parse_widevine_pssh_data(wv.data).key_ids != (KID2,)
