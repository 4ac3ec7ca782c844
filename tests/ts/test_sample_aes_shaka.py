"""Byte comparison with Shaka Packager's SAMPLE-AES TS output for the same input, key and IV.

Shaka re-muxes (its own PES layout, PIDs and PSI), so the comparison is at the level the
specification fixes: every H.264 slice NAL and every audio frame, byte for byte, plus the PMT's
SAMPLE-AES descriptors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fixtures.media import packager_key_flags
from speke_packager._tools import PACKAGER, find_tool
from speke_packager.media.ts import SampleAesEncryptor, encrypt_sample_aes

from .tools import (
    IV,
    KEY,
    check_cc,
    cut_segments,
    es_of,
    hls_frames,
    nals,
    pes_list,
    pmt_of,
    read_packets,
    write_playlist,
)

pytestmark = pytest.mark.interop

KID = "00112233445566778899aabbccddeeff"


def _shaka(src: Path, out: Path, stream: str) -> bytes:
    packager = find_tool("packager", PACKAGER)
    assert packager
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([packager,
                    f"in={src},stream={stream},segment_template={out}/{stream}_$Number$.ts,"
                    f"playlist_name={stream}.m3u8",
                    "--hls_master_playlist_output", str(out / "master.m3u8"),
                    "--enable_raw_key_encryption",
                    packager_key_flags(f"--keys=label=:key_id={KID}:key={KEY.hex()}"),
                    "--iv", IV.hex(),
                    "--protection_scheme", "cbcs", "--clear_lead", "0",
                    "--segment_duration", "30"], check=True, capture_output=True)
    segs = sorted(out.glob(f"{stream}_*.ts"))
    assert len(segs) == 1
    return segs[0].read_bytes()


def _slices(ts: bytes, pid: int) -> list[bytes]:
    return [n for p in pes_list(ts, pid) for n in nals(es_of(p)) if n[0] & 0x1F in (1, 5)]


@pytest.mark.parametrize("recipe,audio", [("h264-aac-ts", 0xCF), ("h264-epb-aac-ts", 0xCF),
                                          ("h264-ac3-ts", 0xC1)])
def test_same_bytes_as_shaka(media, tmp_path: Path, recipe: str, audio: int) -> None:  # type: ignore[no-untyped-def]
    seg = cut_segments(media(recipe), tmp_path / "clear")[0]
    ours = encrypt_sample_aes(seg.read_bytes(), KEY, IV)
    streams = {t: (p, d) for t, p, d in pmt_of(ours)[2]}
    sv = _shaka(seg, tmp_path / "shaka", "video")
    sa = _shaka(seg, tmp_path / "shaka", "audio")
    (v_type, v_pid, _), = pmt_of(sv)[2]
    (a_type, a_pid, a_desc), = pmt_of(sa)[2]
    assert v_type == 0xDB and a_type == audio
    mine = _slices(ours, streams[0xDB][0])
    theirs = _slices(sv, v_pid)
    assert len(mine) == len(theirs) > 20
    assert mine == theirs
    ours_audio = b"".join(es_of(p) for p in pes_list(ours, streams[audio][0]))
    shaka_audio = b"".join(es_of(p) for p in pes_list(sa, a_pid))
    assert ours_audio == shaka_audio
    # private_data_indicator + 'apad' setup information equal Shaka's (ours keeps ffmpeg's
    # own descriptors, such as the 'AC-3' registration, in front)
    assert streams[audio][1].endswith(a_desc) and a_desc.startswith(b"\x0f\x04")


def _shaka_clear(src: Path, out: Path, stream: str) -> list[Path]:
    packager = find_tool("packager", PACKAGER)
    assert packager
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([packager,
                    f"in={src},stream={stream},segment_template={out}/{stream}_$Number$.ts,"
                    f"playlist_name={stream}.m3u8",
                    "--hls_master_playlist_output", str(out / "master.m3u8"),
                    "--segment_duration", "2"], check=True, capture_output=True)
    return sorted(out.glob(f"{stream}_*.ts"), key=lambda p: int(p.stem.split("_")[1]))


@pytest.mark.parametrize("stream", ["video", "audio"])
def test_encrypts_shaka_made_ts(media, tmp_path: Path, stream: str) -> None:  # type: ignore[no-untyped-def]
    """Input from another segmenter: PSI padded with adaptation-field stuffing, PCR in the
    first PES packet, other PIDs. FFmpeg decrypts ours to the clear frames."""
    segs = _shaka_clear(media("h264-aac-ts"), tmp_path, stream)
    assert len(segs) >= 3
    enc = SampleAesEncryptor(KEY, IV)
    names = []
    for n, s in enumerate(segs):
        data = enc.encrypt_segment(s.read_bytes())
        assert pmt_of(data)[2][0][0] in (0xDB, 0xCF)
        assert len(data) == s.stat().st_size and check_cc(read_packets(data)) == []
        (tmp_path / f"enc{n}.ts").write_bytes(data)
        names.append(f"enc{n}.ts")
    (tmp_path / "key.bin").write_bytes(KEY)
    sel = "v:0" if stream == "video" else "a:0"
    ref = hls_frames(write_playlist(tmp_path / "c.m3u8", [s.name for s in segs]), sel)
    assert len(ref) > 100
    got = hls_frames(write_playlist(tmp_path / "e.m3u8", names, repeat_last=True,
                                    key_line=f'#EXT-X-KEY:METHOD=SAMPLE-AES,URI="key.bin",'
                                             f'IV=0x{IV.hex()}'), sel)
    assert got[: len(ref)] == ref
