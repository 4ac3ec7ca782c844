"""Packet-level properties of SAMPLE-AES output, checked with the test's own TS reader."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from speke_packager.errors import TsFormatError, UnsupportedMediaError
from speke_packager.media.ts import SampleAesEncryptor, decrypt_sample_aes, encrypt_sample_aes

from .tools import (
    IV,
    KEY,
    check_cc,
    cut_segments,
    es_of,
    ffmpeg,
    hls_frames,
    mux_exact,
    nals,
    pes_list,
    pmt_of,
    read_packets,
    split_access_units,
    write_playlist,
)

SAES = {0x1B: 0xDB, 0x0F: 0xCF, 0x81: 0xC1, 0x87: 0xC2}


@pytest.fixture(scope="module")
def segments(media, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:  # type: ignore[no-untyped-def]
    out = {}
    for r in ("h264-aac-ts", "h264-ac3-ts", "h264-2aac-ts", "h264-epb-aac-ts", "aac-ts"):
        out[r] = cut_segments(media(r), tmp_path_factory.mktemp(r))
    return out


@pytest.mark.parametrize("recipe", ["h264-aac-ts", "h264-ac3-ts", "h264-2aac-ts",
                                    "h264-epb-aac-ts", "aac-ts"])
def test_structure(segments: dict[str, list[Path]], recipe: str) -> None:
    changed = 0
    for seg in segments[recipe]:
        clear = seg.read_bytes()
        enc = encrypt_sample_aes(clear, KEY, IV)
        cp, ep = read_packets(clear), read_packets(enc)
        pmt_pid, _, streams = pmt_of(clear)
        _, sec, enc_streams = pmt_of(enc)
        # PMT: SAMPLE-AES types, descriptors, one packet, CRC checked by pmt_of, version + 1
        assert [(SAES[t], p) for t, p, _ in streams] == [(t, p) for t, p, _ in enc_streams]
        for (t, _, d0), (_, _, d1) in zip(streams, enc_streams, strict=True):
            assert d1.startswith(d0)
            tag = {0x1B: b"zavc", 0x0F: b"aacd", 0x81: b"ac3d"}[t]
            assert d1[len(d0):].startswith(b"\x0f\x04" + tag)
            if t != 0x1B:
                assert d1[len(d0) + 6 + 2 : len(d0) + 6 + 6] == b"apad"
        clear_sec = pmt_of(clear)[1]
        assert (sec[5] >> 1) & 31 == (((clear_sec[5] >> 1) & 31) + 1) % 32
        # the rest of the program: identical bytes
        for a, b in zip((p for p in cp if p.pid not in {s[1] for s in streams} | {pmt_pid}),
                        (p for p in ep if p.pid not in {s[1] for s in streams} | {pmt_pid}),
                        strict=True):
            assert a.raw == b.raw
        assert check_cc(ep) == check_cc(cp) == []
        # PCR values and their packets' adaptation-field flags survive
        assert [p.pcr for p in cp if p.pcr is not None] == [p.pcr for p in ep if p.pcr is not None]
        for _, pid, _ in streams:
            a_pes, b_pes = pes_list(clear, pid), pes_list(enc, pid)
            assert len(a_pes) == len(b_pes)
            for a, b in zip(a_pes, b_pes, strict=True):
                assert a[: 4] == b[: 4] and a[6 : 9 + a[8]] == b[6 : 9 + b[8]]  # header kept
                declared = (b[4] << 8) | b[5]
                assert declared in (0, len(b) - 6)
        # audio packets: same headers and adaptation fields, only payload bytes differ
        for _, pid, _ in streams[1:] if streams[0][0] == 0x1B else streams:
            ca = [p for p in cp if p.pid == pid]
            ea = [p for p in ep if p.pid == pid]
            assert [(p.raw[:4], p.af) for p in ca] == [(p.raw[:4], p.af) for p in ea]
            changed += b"".join(p.payload for p in ca) != b"".join(p.payload for p in ea)
        # decrypting gives back every elementary stream byte for byte
        dec = decrypt_sample_aes(enc, KEY, IV)
        assert [s[:2] for s in pmt_of(dec)[2]] == [s[:2] for s in streams]
        for _, pid, _ in streams:
            assert [es_of(x) for x in pes_list(dec, pid)] == [es_of(x) for x in pes_list(clear, pid)]
    assert changed >= len(segments[recipe]) - 1  # (a last segment may hold only tiny frames)


def test_protected_nal_bytes(segments: dict[str, list[Path]]) -> None:
    """Slices: the 32-byte leader and non-slice NALs stay clear; NALs <= 48 bytes untouched."""
    clear = segments["h264-epb-aac-ts"][0].read_bytes()
    enc = encrypt_sample_aes(clear, KEY, IV)
    pid = pmt_of(clear)[2][0][1]
    a = [n for p in pes_list(clear, pid) for n in nals(es_of(p))]
    b = [n for p in pes_list(enc, pid) for n in nals(es_of(p))]
    assert len(a) == len(b)
    grown = 0
    for x, y in zip(a, b, strict=True):
        if x[0] & 0x1F in (1, 5) and len(x) > 48:
            assert y != x and y[:16] == x[:16]
            grown += len(y) > len(x)
        else:
            assert y == x
    assert grown > 0  # this asset exercises the second emulation-prevention pass


def _raw_h264(src: Path, out: Path, frames: int) -> bytes:
    subprocess.run([ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
                    "-map", "0:v", "-c", "copy", "-frames:v", str(frames), "-f", "h264",
                    str(out)], check=True)
    return out.read_bytes()


@pytest.mark.interop
@pytest.mark.parametrize("af_only_pcr", [False, True])
def test_grown_pes_repacketised(media, tmp_path: Path, af_only_pcr: bool) -> None:  # type: ignore[no-untyped-def]
    """PES that fill their packets exactly (no stuffing to absorb growth): new packets after
    each grown PES, CC renumbered, the PID's packet count kept equal mod 16 so the next segment
    continues, PCR kept, and FFmpeg still decrypts every frame."""
    aus = split_access_units(_raw_h264(media("h264-epb-aac-ts"), tmp_path / "v.h264", 50))
    clear = mux_exact(aus, af_only_pcr=af_only_pcr)
    enc = encrypt_sample_aes(clear, KEY, IV)
    cp, ep = read_packets(clear), read_packets(enc)
    assert check_cc(cp) == []
    assert len(ep) > len(cp)  # packets were added
    assert (len(ep) - len(cp)) % 16 == 0
    assert check_cc(ep) == []
    assert cp[-1].cc == ep[-1].cc
    assert [p.pcr for p in cp if p.pcr is not None] == [p.pcr for p in ep if p.pcr is not None]
    for p in ep:  # never 0xFF padding inside a video payload: each PES parses back exactly
        assert p.payload or p.af
    for pes in pes_list(enc, 0x100):
        assert (pes[4] << 8 | pes[5]) == len(pes) - 6
    dec = decrypt_sample_aes(enc, KEY, IV)
    assert [es_of(x) for x in pes_list(dec, 0x100)] == [es_of(x) for x in pes_list(clear, 0x100)]
    # two encrypted copies back to back join exactly like two clear copies
    def joins(ts: bytes) -> list[str]:
        return [e.split(":", 1)[1] for e in check_cc(read_packets(ts + ts[2 * 188 :]))]
    assert joins(enc) == joins(clear)
    (tmp_path / "clear.ts").write_bytes(clear)
    (tmp_path / "enc.ts").write_bytes(enc)
    (tmp_path / "key.bin").write_bytes(KEY)
    ref = hls_frames(write_playlist(tmp_path / "c.m3u8", ["clear.ts"]), "v:0")
    assert len(ref) == 50
    got = hls_frames(write_playlist(tmp_path / "e.m3u8", ["enc.ts"], repeat_last=True,
                                    key_line=f'#EXT-X-KEY:METHOD=SAMPLE-AES,URI="key.bin",'
                                             f'IV=0x{IV.hex()}'), "v:0")
    assert got[:50] == ref


def test_unknown_stream_passes_through(media, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    aus = split_access_units(_raw_h264(media("h264-aac-ts"), tmp_path / "v.h264", 5))
    id3 = b"ID3\x04\x00\x00\x00\x00\x00\x10" + bytes(range(16))
    clear = mux_exact(aus, extra_pid_payload=id3)
    enc = encrypt_sample_aes(clear, KEY, IV)
    assert [p.raw for p in read_packets(clear) if p.pid == 0x102] == \
        [p.raw for p in read_packets(enc) if p.pid == 0x102]
    assert [(t, p) for t, p, _ in pmt_of(enc)[2]] == [(0xDB, 0x100), (0x15, 0x102)]
    with pytest.raises(UnsupportedMediaError, match="0x15"):
        SampleAesEncryptor(KEY, IV, strict=True).encrypt_segment(clear)


def test_segment_without_audio_frames(segments: dict[str, list[Path]]) -> None:
    """The PMT's audio setup information comes from the audio itself; a segment without audio
    frames reuses what the same encryptor saw before, and is an error for a fresh one."""
    clear = segments["h264-aac-ts"][0].read_bytes()
    apid = pmt_of(clear)[2][1][1]
    no_audio = b"".join(p.raw for p in read_packets(clear) if p.pid != apid)
    with pytest.raises(TsFormatError, match="audio setup") as ei:
        encrypt_sample_aes(no_audio, KEY, IV)
    assert ei.value.pid == apid
    enc = SampleAesEncryptor(KEY, IV)
    full = enc.encrypt_segment(clear)
    assert pmt_of(enc.encrypt_segment(no_audio))[2] == pmt_of(full)[2]
