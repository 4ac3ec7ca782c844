"""probe_ts against ffprobe (an independent reader) on ffmpeg-made TS, clear and encrypted."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from speke_packager._tools import find_tool
from speke_packager.media.codecs.ac3 import iter_syncframes
from speke_packager.media.codecs.adts import iter_adts_frames
from speke_packager.media.ts import encrypt_sample_aes, probe_ts
from speke_packager.model import TrackKind

from .tools import IV, KEY, es_of, pes_list, pmt_of

CODEC = {"h264": "avc1", "hevc": "hvc1", "aac": "mp4a", "ac3": "ac-3", "eac3": "ec-3"}


def _ffprobe(path: Path) -> list[dict[str, object]]:
    exe = find_tool("ffprobe")
    assert exe
    out = subprocess.run([exe, "-v", "error", "-show_streams", "-of", "json", str(path)],
                         capture_output=True, check=True).stdout
    return sorted(json.loads(out)["streams"], key=lambda s: int(str(s["id"]), 16))


@pytest.mark.parametrize("recipe", ["h264-aac-ts", "h264-ac3-ts", "h264-eac3-ts", "aac-ts",
                                    "h264-2aac-ts", "hevc-ts"])
def test_probe_matches_ffprobe(media, recipe: str) -> None:  # type: ignore[no-untyped-def]
    path = Path(media(recipe))
    data = path.read_bytes()
    tracks = probe_ts(data)
    ref = _ffprobe(path)
    assert len(tracks) == len(ref)
    for t, r in zip(tracks, ref, strict=True):
        assert t.track_id == int(str(r["id"]), 16)
        assert t.codec == CODEC[str(r["codec_name"])]
        if r["codec_type"] == "video":
            assert t.kind is TrackKind.VIDEO
            assert (t.width, t.height) == (r["width"], r["height"])
            num, den = map(int, str(r["r_frame_rate"]).split("/"))
            assert t.fps == pytest.approx(num / den, rel=1e-3)
        else:
            assert t.kind is TrackKind.AUDIO
            assert t.channels == r["channels"]
    if recipe != "hevc-ts":  # the encrypted segment probes the same
        assert probe_ts(encrypt_sample_aes(data, KEY, IV)) == tracks


@pytest.mark.parametrize("recipe,eac3", [("h264-ac3-ts", False), ("h264-eac3-ts", True)])
def test_ac3_frames_tile_the_stream(media, recipe: str, eac3: bool) -> None:  # type: ignore[no-untyped-def]
    data = Path(media(recipe)).read_bytes()
    pid = pmt_of(data)[2][1][1]
    es = b"".join(es_of(p) for p in pes_list(data, pid))
    frames = list(iter_syncframes(es))
    assert sum(f.frame_size for _, f in frames) == len(es)  # frames cover every byte
    assert all(f.eac3 is eac3 and f.sample_rate == 48000 and f.channels == 2 for _, f in frames)
    assert frames[0][1].frame_size == 768  # 192 kbit/s, 1536 samples at 48 kHz


def test_adts_frames_tile_the_stream(media) -> None:  # type: ignore[no-untyped-def]
    data = Path(media("h264-2aac-ts")).read_bytes()
    for _, pid, _ in pmt_of(data)[2][1:]:
        es = b"".join(es_of(p) for p in pes_list(data, pid))
        frames = list(iter_adts_frames(es))
        assert sum(h.frame_length for _, h in frames) == len(es)
        h = frames[0][1]
        assert h.sample_rate == 48000 and h.audio_object_type == 2
