"""The native fragmenter (progressive MP4/MOV -> CMAF, encrypted in the same pass): every codec
and both schemes decrypt with FFmpeg 8 and with Shaka Packager to the source's decoded frames;
clear fragmenting is byte-stable; the edit list and composition offsets keep the frames."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fixtures.media import framemd5
from speke_packager.constants import Scheme
from speke_packager.media.mp4.codec_string import codec_string, known_codec_string
from speke_packager.media.mp4.fragmenter import TrackFragmenter, cut_movie
from speke_packager.media.mp4.sample_table import read_movie
from speke_packager.pipeline.options import OutputFormat, VodOptions
from speke_packager.pipeline.rawkeys import raw_keyset
from speke_packager.pipeline.vod import encrypt_vod
from tests.mp4 import progressive  # noqa: F401 (registers the progressive recipes)
from tests.mp4.helpers import KEY, KID, WRONG, frames, shaka_decrypt

# AC-3 / E-AC-3 encoders prime 256 samples: the source's edit list starts inside the first
# frame. FFmpeg 8 applies such an edit when it reads a progressive file but not in a fragmented
# one (not in FFmpeg's own DASH output nor in Shaka Packager's either), so for these tracks the
# reference is the source decoded with its edit list ignored (every frame whole), and the test
# checks that the edit list itself was carried into the init segment.
PARTIAL_EDIT = {"hev1-ac3-prog-mp4": {"a:0"}, "eac3-prog-mp4": {"a:0"}}

# (asset, [(stream for the source, Shaka stream selector), ...] in our output's track order)
CASES = {
    "h264-aac-mp4": [("v:0", "video"), ("a:0", "audio")],
    "hevc-aac-prog-mp4": [("v:0", "video"), ("a:0", "audio")],
    "hev1-ac3-prog-mp4": [("v:0", "video"), ("a:0", "audio")],
    "eac3-prog-mp4": [("a:0", "audio")],
    "h264-avc3-aac-prog-mp4": [("v:0", "video"), ("a:0", "audio")],
    "vp9-opus-prog-mp4": [("v:0", "video"), ("a:0", "audio")],
    "h264-aac-delay-mp4": [("v:0", "video"), ("a:0", "audio")],
    "h264-aac-mov": [("v:0", "video"), ("a:0", "audio")],
    "h264-negcts-prog-mp4": [("v:0", "video")],
}


def _package(src: Path, out: Path, scheme: Scheme) -> Path:
    opts = VodOptions(input=src, output=out, scheme=scheme, format=OutputFormat.DASH,
                      segment_duration=2.0, jobs=1, iv_source=lambda n: bytes(range(n)))
    encrypt_vod(opts, raw_keyset([f"{KID.hex}:{KEY.hex()}"], scheme))
    return out


def _track(out: Path, rep: int, tmp: Path) -> Path:
    segs = sorted((out / str(rep)).glob("segment_*.m4s"))
    assert len(segs) >= 3
    dst = tmp / f"track{rep}.mp4"
    with dst.open("wb") as fh:
        for p in [out / str(rep) / "init.mp4", *segs]:
            fh.write(p.read_bytes())
    return dst


@pytest.mark.parametrize("scheme", [Scheme.CENC, Scheme.CBCS], ids=lambda s: s.value)
@pytest.mark.parametrize("name", list(CASES))
def test_decrypts_to_source_frames(name: str, scheme: Scheme, media: Callable[[str], Path],
                                   tmp_path: Path) -> None:
    src = media(name)
    out = _package(src, tmp_path / "out", scheme)
    for rep, (stream, shaka_stream) in enumerate(CASES[name]):
        if stream in PARTIAL_EDIT.get(name, ()):
            ref = framemd5(src, stream, extra_input_args=("-ignore_editlist", "1"))
            _same_edit(src, out / str(rep) / "init.mp4", stream)
        else:
            ref = frames(src, stream)
        assert ref, f"{name} {stream}: no reference frames"
        track = _track(out, rep, tmp_path)
        one = "v:0" if stream.startswith("v") else "a:0"
        assert frames(track, one) != ref, "the track is not encrypted"
        assert frames(track, one, key=WRONG) != ref  # negative control
        assert frames(track, one, key=KEY) == ref, f"{name} {stream}: FFmpeg frames differ"
        clear = tmp_path / f"shaka{rep}.mp4"
        shaka_decrypt(track, clear, shaka_stream, {KID: KEY})
        assert frames(clear, one) == ref, f"{name} {stream}: Shaka Packager frames differ"


def _media_time(data: bytes) -> int | None:
    """media_time of the first non-empty edit of the first trak of ``data``, None without."""
    i = data.find(b"elst")
    if i < 0:
        return None
    version = data[i + 4]
    (n,) = struct.unpack_from(">I", data, i + 8)
    for k in range(n):
        if version == 1:
            mt = struct.unpack_from(">q", data, i + 12 + 20 * k + 8)[0]
        else:
            mt = struct.unpack_from(">i", data, i + 12 + 12 * k + 4)[0]
        if mt != -1:
            return int(mt)
    return None


def _same_edit(src: Path, init: Path, stream: str) -> None:
    fd = os.open(src, os.O_RDONLY)
    try:
        movie = read_movie(fd, src.name)
    finally:
        os.close(fd)
    kind = "video" if stream.startswith("v") else "audio"
    t = [t for t in movie.tracks if t.kind == kind][int(stream[2:])]
    assert t.elst is not None
    assert _media_time(init.read_bytes()) == _media_time(t.elst) != 0


def _fragment(src: Path, tmp: Path, seconds: float = 2.0) -> list[bytes]:
    fd = os.open(src, os.O_RDONLY)
    try:
        movie = read_movie(fd, src.name)
        cuts = cut_movie(movie, seconds)
        out = []
        for t in movie.tracks:
            f = TrackFragmenter(movie, t, cuts[t.track_id])
            parts = [f.init_segment(), *(bytes(f.build(i, fd)) for i in range(f.segment_count))]
            out.append(b"".join(parts))
        return out
    finally:
        os.close(fd)


def test_clear_fragmenting_is_byte_stable(media: Callable[[str], Path], tmp_path: Path) -> None:
    src = media("h264-aac-mp4")
    first = _fragment(src, tmp_path)
    second = _fragment(src, tmp_path)
    assert first == second
    # and the clear tracks decode to the source's frames
    for k, (data, stream) in enumerate(zip(first, ("v:0", "a:0"), strict=True)):
        p = tmp_path / f"clear{k}.mp4"
        p.write_bytes(data)
        assert frames(p, stream) == frames(src, stream)


def test_cuts_at_sync_samples_and_audio_follows_video(media: Callable[[str], Path]) -> None:
    src = media("h264-aac-mp4")
    fd = os.open(src, os.O_RDONLY)
    try:
        movie = read_movie(fd, src.name)
    finally:
        os.close(fd)
    video, audio = movie.tracks
    assert np.any(video.cts != 0), "the asset should have B-frames"
    assert video.elst is not None
    for seconds in (2.0, 3.0, 6.0):
        cuts = cut_movie(movie, seconds)
        assert np.all(video.sync[cuts[video.track_id]])
        v_times = video.dts[cuts[video.track_id]] / video.timescale
        a_times = audio.dts[cuts[audio.track_id]] / audio.timescale
        assert len(v_times) == len(a_times)
        # each audio cut is within one AAC frame of the video cut
        assert np.all(np.abs(v_times - a_times) < 1024 / 48000 + 0.05)
    assert len(cut_movie(movie, 2.0)[video.track_id]) == 3  # GOP 2 s over 6 s


def test_negative_composition_offsets(media: Callable[[str], Path]) -> None:
    src = media("h264-negcts-prog-mp4")
    fd = os.open(src, os.O_RDONLY)
    try:
        movie = read_movie(fd, src.name)
        (video,) = movie.tracks
        assert np.any(video.cts < 0), "the asset should have negative composition offsets"
        f = TrackFragmenter(movie, video, cut_movie(movie, 2.0)[video.track_id])
        seg = bytes(f.build(0, fd))
    finally:
        os.close(fd)
    i = seg.find(b"trun")
    assert seg[i + 4] == 1  # trun version 1: signed offsets


def test_codec_strings(media: Callable[[str], Path]) -> None:
    want = {"h264-aac-mp4": ("avc1.64", "mp4a.40.2"), "hevc-aac-prog-mp4": ("hvc1.1.6.L", "mp4a"),
            "hev1-ac3-prog-mp4": ("hev1.1.6.L", "ac-3"), "eac3-prog-mp4": ("ec-3",),
            "vp9-opus-prog-mp4": ("vp09.00.", "opus")}
    for name, prefixes in want.items():
        src = media(name)
        fd = os.open(src, os.O_RDONLY)
        try:
            movie = read_movie(fd, src.name)
        finally:
            os.close(fd)
        got = [codec_string(t.stsd[16:]) for t in movie.tracks]
        assert len(got) == len(prefixes)
        for g, p in zip(got, prefixes, strict=True):
            assert g.startswith(p), (name, got)
        # every codec here is described: the strict reader says the same
        assert [known_codec_string(t.stsd[16:]) for t in movie.tracks] == got


def test_known_codec_string_gives_none_where_codec_string_guesses(
        media: Callable[[str], Path]) -> None:
    src = media("h264-aac-mp4")
    fd = os.open(src, os.O_RDONLY)
    try:
        movie = read_movie(fd, src.name)
    finally:
        os.close(fd)
    entries = {bytes(t.stsd[20:24]): bytes(t.stsd[16:]) for t in movie.tracks}
    aac = bytearray(entries[b"mp4a"])
    i = aac.find(b"esds")
    assert i > 0 and aac[i + 8] == 0x03  # the ES_Descriptor tag after version/flags
    aac[i + 8] = 0x00  # not an ES_Descriptor: unreadable
    assert codec_string(bytes(aac)) == "mp4a.40.2"
    assert known_codec_string(bytes(aac)) is None
    other = b"fLaC".join((entries[b"mp4a"][:4], entries[b"mp4a"][8:]))
    assert codec_string(other) == "fLaC"
    assert known_codec_string(other) is None
