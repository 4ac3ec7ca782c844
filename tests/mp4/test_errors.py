"""Corrupt or unsupported input -> a typed error naming the cause; keys never in messages."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable

import pytest

from speke_packager.constants import Scheme
from speke_packager.errors import (
    CodecError,
    MediaError,
    Mp4FormatError,
    UnsupportedMediaError,
    UsageError,
)
from speke_packager.media.mp4 import Mp4Encryptor, probe_init
from speke_packager.media.mp4.boxes import iter_boxes
from speke_packager.model import ContentKey
from tests.mp4.conftest import Asset
from tests.mp4.helpers import KEY, KID

K1 = ContentKey(KID, KEY)


def _enc(a: Asset, scheme: Scheme = Scheme.CENC) -> Mp4Encryptor:
    return Mp4Encryptor(a.init, scheme, {1: K1}, iv_seed=b"e")


def _no_key(exc: BaseException) -> None:
    assert KEY.hex() not in str(exc) and KEY.hex().upper() not in str(exc)


def test_missing_moov(asset: Callable[[str], Asset]) -> None:
    a = asset("h264-fmp4")
    ftyp = next(b for b in iter_boxes(a.init) if b.type == b"ftyp")
    with pytest.raises(Mp4FormatError, match="no moov") as e:
        Mp4Encryptor(a.init[:ftyp.end], Scheme.CENC, {1: K1})
    assert e.value.box_path == "init"
    with pytest.raises(Mp4FormatError, match="no moov"):
        Mp4Encryptor(a.init[:ftyp.end] + a.segments[0], Scheme.CENC, {1: K1})


def test_truncated_init(asset: Callable[[str], Asset]) -> None:
    a = asset("h264-fmp4")
    with pytest.raises(Mp4FormatError, match="runs past the end") as e:
        probe_init(a.init[:-10])
    assert e.value.box_path == "init/moov"
    with pytest.raises(Mp4FormatError, match="truncated box header"):
        probe_init(a.init + b"\x00\x00\x00")


def test_truncated_segment(asset: Callable[[str], Asset]) -> None:
    a = asset("h264-fmp4")
    enc = _enc(a)
    seg = a.segments[0]
    with pytest.raises(Mp4FormatError, match="runs past the end") as e:
        enc.encrypt_segment(seg[:-100], segment_index=0)
    assert e.value.box_path == "segment/mdat"
    _no_key(e.value)
    with pytest.raises(Mp4FormatError, match="no moof"):
        enc.encrypt_segment(seg[seg.find(b"mdat") - 4:], segment_index=0)


def test_size_past_end_and_too_small(asset: Callable[[str], Asset]) -> None:
    a = asset("h264-fmp4")
    enc = _enc(a)
    seg = bytearray(a.segments[0])
    bad = bytearray(seg)
    struct.pack_into(">I", bad, 0, len(seg) * 2)  # moof size past the end
    with pytest.raises(Mp4FormatError, match="runs past the end") as e:
        enc.encrypt_segment(bytes(bad), segment_index=0)
    assert e.value.box_path == "segment/moof"
    bad = bytearray(seg)
    struct.pack_into(">I", bad, 0, 4)
    with pytest.raises(Mp4FormatError, match="smaller than its header"):
        enc.encrypt_segment(bytes(bad), segment_index=0)
    # a child box inside traf that claims more than its parent holds
    pos = seg.find(b"tfdt") - 4
    bad = bytearray(seg)
    struct.pack_into(">I", bad, pos, 10_000)
    with pytest.raises(Mp4FormatError) as e:
        enc.encrypt_segment(bytes(bad), segment_index=0)
    assert e.value.box_path == "segment/moof/traf/tfdt"


def test_trun_and_samples_out_of_range(asset: Callable[[str], Asset]) -> None:
    a = asset("h264-fmp4")
    enc = _enc(a)
    seg = a.segments[0]
    pos = seg.find(b"trun") + 8
    bad = bytearray(seg)
    struct.pack_into(">I", bad, pos, 100_000)  # sample_count far beyond the records
    with pytest.raises(Mp4FormatError, match="fewer than"):
        enc.encrypt_segment(bytes(bad), segment_index=0)
    # samples pointing past the mdat
    bad = bytearray(seg)
    (off,) = struct.unpack_from(">i", bad, pos + 4)
    struct.pack_into(">i", bad, pos + 4, off + 5000)
    with pytest.raises(Mp4FormatError, match="not inside an mdat"):
        enc.encrypt_segment(bytes(bad), segment_index=0)


def test_corrupt_nal_length(asset: Callable[[str], Asset]) -> None:
    a = asset("h264-fmp4")
    seg = bytearray(a.segments[0])
    mdat = next(b for b in iter_boxes(seg) if b.type == b"mdat")
    struct.pack_into(">I", seg, mdat.payload_start, 0x00FFFFFF)
    for scheme in (Scheme.CENC, Scheme.CBCS):
        with pytest.raises(CodecError, match="sample 0") as e:
            _enc(a, scheme).encrypt_segment(bytes(seg), segment_index=0)
        _no_key(e.value)


def test_unsupported_codec(asset: Callable[[str], Asset]) -> None:
    a = asset("h264-fmp4")
    init = a.init.replace(b"avc1", b"av01", 1)
    assert probe_init(init)[0].codec == "av01"
    with pytest.raises(UnsupportedMediaError, match="'av01'"):
        Mp4Encryptor(init, Scheme.CBCS, {1: K1})
    init = a.init.replace(b"avc1", b"mp4v", 1)
    with pytest.raises(UnsupportedMediaError, match="'mp4v'"):
        Mp4Encryptor(init, Scheme.CENC, {1: K1})
    # a clear track of an unsupported codec is fine when it gets no key
    assert Mp4Encryptor(init, Scheme.CENC, {}).encrypted_init() == init


def test_already_encrypted(asset: Callable[[str], Asset]) -> None:
    a = asset("aac-fmp4")
    enc = _enc(a)
    with pytest.raises(UnsupportedMediaError, match="already encrypted"):
        Mp4Encryptor(enc.encrypted_init(), Scheme.CENC, {1: K1})
    seg = enc.encrypt_segment(a.segments[0], segment_index=0)
    with pytest.raises(UnsupportedMediaError, match="already encrypted"):
        enc.encrypt_segment(seg, segment_index=0)


def test_usage_errors(asset: Callable[[str], Asset]) -> None:
    a = asset("aac-fmp4")
    with pytest.raises(UsageError, match="no track 9"):
        Mp4Encryptor(a.init, Scheme.CENC, {9: K1})
    with pytest.raises(UsageError):
        Mp4Encryptor(a.init, Scheme.AES_128, {1: K1})
    with pytest.raises(UsageError):
        Mp4Encryptor(a.init, Scheme.CENC, {1: K1}, iv_size=12)
    with pytest.raises(UsageError):
        Mp4Encryptor(a.init, Scheme.CBCS, {1: K1}, constant_iv=b"123")
    enc = _enc(a)
    with pytest.raises(UsageError, match="segment_index"):
        enc.encrypt_segment(a.segments[0], segment_index=-1)
    with pytest.raises(MediaError):
        enc.encrypt_segment(a.segments[0], segment_index=0, pssh=[b"not a box"])


def test_stream_errors(asset: Callable[[str], Asset]) -> None:
    a = asset("h264-fmp4")
    enc = _enc(a)
    whole = a.path.read_bytes()
    with pytest.raises(Mp4FormatError, match="file ends inside"):
        enc.encrypt_stream(io.BytesIO(whole[:-50]), io.BytesIO())
    with pytest.raises(Mp4FormatError, match="moof before moov"):
        enc.encrypt_stream(io.BytesIO(a.segments[0]), io.BytesIO())
    ftyp = next(b for b in iter_boxes(whole) if b.type == b"ftyp")
    with pytest.raises(Mp4FormatError, match="no moov"):
        enc.encrypt_stream(io.BytesIO(whole[:ftyp.end]), io.BytesIO())


def test_stream_with_other_moov(asset: Callable[[str], Asset]) -> None:
    a, b = asset("h264-fmp4"), asset("hevc-fmp4")
    with pytest.raises(UsageError, match="moov differs"):
        _enc(a).encrypt_stream(io.BytesIO(b.path.read_bytes()), io.BytesIO())


def test_progressive_mp4_refused(media: Callable[[str], object]) -> None:
    from pathlib import Path

    path = media("h264-aac-mp4")
    assert isinstance(path, Path)
    data = path.read_bytes()
    moov = next(b for b in iter_boxes(data) if b.type == b"moov")
    init = data[:moov.end]
    assert len(probe_init(init)) == 2  # probing works
    with pytest.raises(UnsupportedMediaError, match="not fragmented"):
        Mp4Encryptor(init, Scheme.CENC, {1: K1})
