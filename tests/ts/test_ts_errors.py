"""Bad input gives a typed error naming packet and PID; keys never leak into messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from speke_packager.errors import CodecError, TsFormatError, UnsupportedMediaError, UsageError
from speke_packager.media.ts import SampleAesEncryptor, encrypt_sample_aes, probe_ts

from .tools import IV, KEY, pmt_of, read_packets


@pytest.fixture(scope="module")
def clear(media) -> bytes:  # type: ignore[no-untyped-def]
    return Path(media("h264-aac-ts")).read_bytes()[: 188 * 1500]


def _first(data: bytes, pid: int, *, pusi: bool | None = None, nth: int = 0) -> int:
    hits = [p.index for p in read_packets(data) if p.pid == pid and (pusi is None or p.pusi == pusi)]
    return hits[nth]


def test_truncated_last_packet(clear: bytes) -> None:
    with pytest.raises(TsFormatError) as ei:
        encrypt_sample_aes(clear[:-10], KEY, IV)
    assert ei.value.packet_index == 1499 and ei.value.pid is not None


def test_lost_sync(clear: bytes) -> None:
    bad = bytearray(clear)
    bad[188 * 7] = 0x48
    with pytest.raises(TsFormatError) as ei:
        encrypt_sample_aes(bytes(bad), KEY, IV)
    assert ei.value.packet_index == 7
    shifted = clear[: 188 * 9 + 50] + b"\x00" + clear[188 * 9 + 50 :]  # one byte too many
    with pytest.raises(TsFormatError) as ei:
        encrypt_sample_aes(shifted[: 188 * 1500], KEY, IV)
    assert ei.value.packet_index == 10


def test_empty_and_no_psi(clear: bytes) -> None:
    with pytest.raises(TsFormatError):
        encrypt_sample_aes(b"", KEY, IV)
    no_pat = b"".join(p.raw for p in read_packets(clear) if p.pid != 0)
    with pytest.raises(TsFormatError, match="no PAT"):
        encrypt_sample_aes(no_pat, KEY, IV)


def test_pmt_crc_mismatch(clear: bytes) -> None:
    pmt_pid = pmt_of(clear)[0]
    i = _first(clear, pmt_pid, pusi=True)
    bad = bytearray(clear)
    bad[i * 188 + 5 + 14] ^= 0x01  # inside the section
    with pytest.raises(TsFormatError, match="CRC") as ei:
        encrypt_sample_aes(bytes(bad), KEY, IV)
    assert ei.value.pid == pmt_pid and ei.value.packet_index == i


def test_pes_longer_than_declared(clear: bytes) -> None:
    apid = pmt_of(clear)[2][1][1]
    i = _first(clear, apid, pusi=True)
    bad = bytearray(clear)
    start = i * 188 + 4 + (1 + bad[i * 188 + 4] if bad[i * 188 + 3] & 0x20 else 0)
    assert bad[start : start + 3] == b"\x00\x00\x01"
    declared = (bad[start + 4] << 8) | bad[start + 5]
    bad[start + 4 : start + 6] = (declared - 20).to_bytes(2, "big")
    with pytest.raises(TsFormatError, match="longer than its declared") as ei:
        encrypt_sample_aes(bytes(bad), KEY, IV)
    assert ei.value.pid == apid and ei.value.packet_index is not None


def test_pes_starting_before_segment(clear: bytes) -> None:
    vpid = pmt_of(clear)[2][0][1]
    i = _first(clear, vpid, pusi=True)
    cut = clear[: i * 188] + clear[(i + 1) * 188 :]
    with pytest.raises(TsFormatError, match="started before") as ei:
        encrypt_sample_aes(cut, KEY, IV)
    assert ei.value.pid == vpid


def test_broken_adts_inside_pes(clear: bytes) -> None:
    apid = pmt_of(clear)[2][1][1]
    i = _first(clear, apid, pusi=True)
    bad = bytearray(clear)
    start = i * 188 + 4 + (1 + bad[i * 188 + 4] if bad[i * 188 + 3] & 0x20 else 0)
    es = start + 9 + bad[start + 8]
    assert bad[es] == 0xFF
    bad[es] = 0x00
    with pytest.raises(CodecError, match="ADTS"):
        encrypt_sample_aes(bytes(bad), KEY, IV)


def test_hevc_refused(media) -> None:  # type: ignore[no-untyped-def]
    data = Path(media("hevc-ts")).read_bytes()
    assert probe_ts(data)[0].codec == "hvc1"
    with pytest.raises(UnsupportedMediaError, match="HEVC"):
        encrypt_sample_aes(data, KEY, IV)


def test_already_encrypted_and_strict(clear: bytes) -> None:
    enc = encrypt_sample_aes(clear, KEY, IV)
    with pytest.raises(UnsupportedMediaError, match="already"):
        encrypt_sample_aes(enc, KEY, IV)


def test_bad_key_and_iv_never_echoed(clear: bytes) -> None:
    for key, iv in ((KEY[:15], IV), (KEY, IV[:8])):
        with pytest.raises(UsageError) as ei:
            encrypt_sample_aes(clear, key, iv)
        assert key.hex() not in str(ei.value)
    enc = SampleAesEncryptor(KEY, IV)
    assert KEY.hex() not in repr(enc) and str(KEY) not in repr(enc)
    with pytest.raises(TsFormatError) as ei2:
        enc.encrypt_segment(clear[:-1])
    assert KEY.hex() not in str(ei2.value)


def test_video_pes_without_start_code(clear: bytes) -> None:
    vpid = pmt_of(clear)[2][0][1]
    i = _first(clear, vpid, pusi=True, nth=1)
    bad = bytearray(clear)
    start = i * 188 + 4 + (1 + bad[i * 188 + 4] if bad[i * 188 + 3] & 0x20 else 0)
    es = start + 9 + bad[start + 8]
    assert bad[es : es + 3] in (b"\x00\x00\x01", b"\x00\x00\x00")
    bad[es : es + 4] = b"\x55\x55\x55\x55"
    with pytest.raises(CodecError, match="start code"):
        encrypt_sample_aes(bytes(bad), KEY, IV)


def test_stream_api(clear: bytes) -> None:
    import io

    dst = io.BytesIO()
    n = SampleAesEncryptor(KEY, IV).encrypt_stream(io.BytesIO(clear), dst)
    assert n == len(dst.getvalue()) and dst.getvalue() == encrypt_sample_aes(clear, KEY, IV)


def test_damaged_packet_flagged(clear: bytes) -> None:
    vpid = pmt_of(clear)[2][0][1]
    i = _first(clear, vpid, pusi=False, nth=3)
    bad = bytearray(clear)
    bad[i * 188 + 1] |= 0x80  # transport_error_indicator
    with pytest.raises(TsFormatError, match="transport_error") as ei:
        encrypt_sample_aes(bytes(bad), KEY, IV)
    assert (ei.value.packet_index, ei.value.pid) == (i, vpid)
