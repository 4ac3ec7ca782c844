"""Unit checks: bit reader, EPB accounting, sample ciphers against openssl, subsample rules,
in-band parameter sets, VP9 superframes."""

from __future__ import annotations

import os
import struct
import subprocess
from collections.abc import Callable

import pytest

from speke_packager.constants import Scheme
from speke_packager.errors import CodecError, UnsupportedMediaError
from speke_packager.media.codecs import h264, hevc, vp9
from speke_packager.media.codecs.bits import BitReader, escaped_length, unescape_prefix
from speke_packager.media.mp4.init import parse_init
from speke_packager.media.mp4.sample_crypto import cbcs_sample, cenc_sample
from speke_packager.media.subsamples import CodecFamily, SubsampleMapper
from tests.mp4.conftest import Asset
from tests.mp4.helpers import KEY, senc_samples


def test_bitreader() -> None:
    # 1 | 010 | 011 | 00100 | 00101 | 0 pad -> ue 0, 1, 2, 3, se(4) = -2
    r = BitReader(bytes([0b10100110, 0b01000010, 0b10000000]))
    assert [r.ue(), r.ue(), r.ue(), r.ue()] == [0, 1, 2, 3]
    assert r.se() == -2
    assert r.pos == 17
    with pytest.raises(CodecError, match="truncated"):
        r.u(8)
    with pytest.raises(CodecError):
        BitReader(b"\x00\x00").ue()


def test_epb_accounting() -> None:
    nal = bytes.fromhex("6588 0000 03 01 0000 03 00 ff")
    rbsp, epbs = unescape_prefix(nal, len(nal))
    assert rbsp == bytes.fromhex("6588 0000 01 0000 00 ff")
    assert epbs == [4, 8]
    assert escaped_length(4, epbs) == 4
    assert escaped_length(5, epbs) == 6
    assert escaped_length(8, epbs) == 10


def _openssl(mode: str, key: bytes, iv: bytes, data: bytes) -> bytes:
    res = subprocess.run(["openssl", "enc", f"-aes-128-{mode}", "-nopad", "-K", key.hex(),
                          "-iv", iv.hex()], input=data, capture_output=True, check=True)
    return res.stdout


@pytest.mark.interop
@pytest.mark.parametrize("iv", [bytes(8), b"\xff" * 8, bytes.fromhex("f7080bd775c6360c72eeaba2a931ae85")], ids=["zero", "ff", "iv16"])
def test_cenc_sample_matches_openssl(iv: bytes) -> None:
    data = os.urandom(3000)
    subs = [(5, 1024), (100, 33), (7, 0), (200, 1631)]
    buf = bytearray(data)
    cenc_sample(buf, 0, len(buf), key=KEY, iv=iv, subsamples=subs)
    counter = iv + bytes(8) if len(iv) == 8 else iv
    # one continuous keystream over the protected bytes of the sample
    protected = b""
    pos = 0
    for c, p in subs:
        pos += c
        protected += data[pos:pos + p]
        pos += p
    stream = _openssl("ctr", KEY, counter, protected)
    expect = bytearray(data)
    pos = k = 0
    for c, p in subs:
        pos += c
        expect[pos:pos + p] = stream[k:k + p]
        pos += p
        k += p
    assert buf == expect
    cenc_sample(buf, 0, len(buf), key=KEY, iv=iv, subsamples=subs)
    assert buf == data
    whole = bytearray(data)
    cenc_sample(whole, 0, len(whole), key=KEY, iv=iv, subsamples=None)
    assert whole == _openssl("ctr", KEY, counter, data + bytes(8))[:len(data)]


@pytest.mark.interop
@pytest.mark.parametrize("length", [15, 16, 17, 159, 160, 176, 177, 320, 1000, 4099])
@pytest.mark.parametrize(("crypt", "skip"), [(1, 9), (0, 0), (2, 8)])
def test_cbcs_pattern_matches_openssl(length: int, crypt: int, skip: int) -> None:
    iv = os.urandom(16)
    lead = 7
    data = os.urandom(lead + length + 3)
    buf = bytearray(data)
    cbcs_sample(buf, 0, len(buf), key=KEY, iv=iv, subsamples=[(lead, length), (3, 0)],
                crypt=crypt, skip=skip)
    # reference: list the crypt blocks one by one, CBC them as one chain with openssl
    blocks: list[int] = []
    pos = lead
    end = lead + length
    if crypt == 0:
        blocks = list(range(lead, lead + (length // 16) * 16, 16))
    else:
        while end - pos >= crypt * 16:
            blocks += [pos + 16 * j for j in range(crypt)]
            pos += (crypt + skip) * 16
    expect = bytearray(data)
    if blocks:
        chain = _openssl("cbc", KEY, iv, b"".join(data[b:b + 16] for b in blocks))
        for i, b in enumerate(blocks):
            expect[b:b + 16] = chain[16 * i:16 * i + 16]
    assert buf == expect
    cbcs_sample(buf, 0, len(buf), key=KEY, iv=iv, subsamples=[(lead, length), (3, 0)],
                crypt=crypt, skip=skip, decrypt=True)
    assert buf == data


def test_cbcs_restarts_per_subsample() -> None:
    iv = os.urandom(16)
    block = os.urandom(16)
    buf = bytearray(b"\x00" * 4 + block + b"\x00" * 4 + block)
    cbcs_sample(buf, 0, len(buf), key=KEY, iv=iv, subsamples=[(4, 16), (4, 16)], crypt=1,
                skip=9)
    assert buf[4:20] == buf[24:40] == _openssl("cbc", KEY, iv, block)


def _nal(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def test_nal_map_rules() -> None:
    cenc = SubsampleMapper(CodecFamily.H264, Scheme.CENC).session()
    sei = _nal(b"\x06" + b"\x01" * 70_000)
    slice_ = _nal(b"\x65" + b"\x02" * 1000)
    small = _nal(b"\x41" + b"\x03" * 10)
    subs = cenc.map(sei + slice_ + small)
    assert subs is not None
    assert subs[0] == (65535, 0)
    assert subs[1] == (len(sei) - 65535 + 4 + 1 + 1000 % 16, 1000 - 1000 % 16)
    assert subs[2] == (len(small), 0)
    assert sum(c + p for c, p in subs) == len(sei) + len(slice_) + len(small)
    hevc_map = SubsampleMapper(CodecFamily.HEVC, Scheme.CENC).session()
    assert hevc_map.map(_nal(b"\x26\x01" + b"\x05" * 100)) == [(4 + 2 + 4, 96)]
    assert SubsampleMapper(CodecFamily.AUDIO, Scheme.CBCS).session().map(b"x" * 100) is None
    with pytest.raises(CodecError, match="past the end"):
        cenc.map(_nal(b"\x65" * 10)[:-1])
    with pytest.raises(UnsupportedMediaError):
        SubsampleMapper(CodecFamily.H264, Scheme.SAMPLE_AES)
    with pytest.raises(UnsupportedMediaError, match="data partitioning"):
        SubsampleMapper(CodecFamily.H264, Scheme.CBCS).session().map(_nal(b"\x22" + b"\x01" * 40))


@pytest.mark.parametrize("name", ["h264-fmp4", "hevc-fmp4"])
def test_in_band_parameter_sets(name: str, asset: Callable[[str], Asset]) -> None:
    """avc3/hev1: parameter sets carried in the sample are used for the slice headers."""
    a = asset(name)
    track = parse_init(a.init).tracks[1]
    with_config = track.mapper(Scheme.CBCS)
    bare = SubsampleMapper(with_config.family, Scheme.CBCS, with_config.nal_length_size)
    sample = senc_samples(a.init + a.segments[0], 1, 0)[0].data
    with pytest.raises(CodecError, match="unknown PPS"):
        bare.session().map(sample)
    inband = b"".join(_nal(n) for n in with_config.param_nals) + sample
    expect = with_config.session().map(sample)
    got = bare.session().map(inband)
    assert expect is not None and got is not None
    extra = sum(4 + len(n) for n in with_config.param_nals)
    assert got[0] == (expect[0][0] + extra, expect[0][1])
    assert got[1:] == expect[1:]
    assert all(p > 0 for _, p in expect[:1])


def test_slice_header_sizes_differ_by_type(asset: Callable[[str], Asset]) -> None:
    """cbcs clear parts cover the slice header: longer than NAL length + header, shorter than
    the NAL, and computed per slice (I, P and B slices differ)."""
    a = asset("h264-fmp4")
    m = parse_init(a.init).tracks[1].mapper(Scheme.CBCS).session()
    firsts = set()
    for s in senc_samples(a.init + a.segments[0], 1, 0)[:20]:
        subs = m.map(s.data)
        assert subs is not None
        last_clear = subs[-1][0] if subs[-1][1] else subs[-2][0]
        assert last_clear > 5
        firsts.add(last_clear)
    assert len(firsts) > 2


def test_vp9_superframe() -> None:
    f1 = b"\x01" * 300
    f2 = b"\x02" * 40
    marker = 0xC0 | (1 << 3) | 1  # 2 frames, 2-byte sizes
    index = bytes([marker]) + struct.pack("<HH", 300, 40) + bytes([marker])
    frames, size = vp9.split_superframe(f1 + f2 + index)
    assert frames == [(0, 300), (300, 40)] and size == len(index)
    assert vp9.split_superframe(f1) == ([(0, 300)], 0)
    bad = bytes([marker]) + struct.pack("<HH", 300, 41) + bytes([marker])
    with pytest.raises(CodecError, match="superframe"):
        vp9.split_superframe(f1 + f2 + bad)
    with pytest.raises(CodecError, match="frame_marker"):
        vp9.uncompressed_header_size(b"\x00" * 20, vp9.Vp9State(320, 180))


def test_codec_config_errors() -> None:
    with pytest.raises(CodecError):
        h264.parse_avcc(b"\x01\x64")
    with pytest.raises(CodecError):
        hevc.parse_hvcc(b"\x01" * 10)
