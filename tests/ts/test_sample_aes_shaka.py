"""Byte comparison with Shaka Packager's SAMPLE-AES TS output for the same input, key and IV.

Shaka re-muxes (its own PES layout, PIDs and PSI), so the comparison is at the level the
specification fixes: every H.264 slice NAL and every audio frame, byte for byte, plus the PMT's
SAMPLE-AES descriptors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from speke_packager._tools import find_tool
from speke_packager.media.ts import encrypt_sample_aes

from .tools import IV, KEY, cut_segments, es_of, nals, pes_list, pmt_of

pytestmark = pytest.mark.interop

KID = "00112233445566778899aabbccddeeff"


def _shaka(src: Path, out: Path, stream: str) -> bytes:
    packager = find_tool("packager")
    assert packager
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([packager,
                    f"in={src},stream={stream},segment_template={out}/{stream}_$Number$.ts,"
                    f"playlist_name={stream}.m3u8",
                    "--hls_master_playlist_output", str(out / "master.m3u8"),
                    "--enable_raw_key_encryption", "--keys",
                    f"label=:key_id={KID}:key={KEY.hex()}", "--iv", IV.hex(),
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
