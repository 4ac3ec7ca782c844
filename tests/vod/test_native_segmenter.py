"""encrypt-vod on a progressive MP4 with the native segmenter (the default) and with
``--segmenter ffmpeg``, through the real CLI and ``verify``; the option's rules; the output does
not depend on the worker count; memory stays bounded on a long input."""

from __future__ import annotations

import subprocess
import tracemalloc
from pathlib import Path

import pytest

from speke_packager.constants import Scheme
from speke_packager.errors import UsageError
from speke_packager.pipeline.options import OutputFormat, VodOptions
from speke_packager.pipeline.rawkeys import raw_keyset
from speke_packager.pipeline.vod import encrypt_vod

from .conftest import IV, KEYSPEC, cli, ffmpeg

_KEY_URI = "https://keys.example/{kid}"


@pytest.mark.parametrize("segmenter", ["native", "ffmpeg", None])
@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
def test_cli_encrypt_vod_mp4_then_verify(segmenter: str | None, scheme: str, media,
                                         tmp_path: Path) -> None:
    src = media("h264-aac-mp4")
    out = tmp_path / "out"
    args = ["encrypt-vod", str(src), "-o", str(out), "--scheme", scheme, "--key", KEYSPEC,
            "--key-uri", _KEY_URI, "--segment-duration", "2", "--quiet"]
    if segmenter:
        args += ["--segmenter", segmenter]
    res = cli(*args)
    assert res.returncode == 0, res.stderr
    assert {p.name for p in out.iterdir()} == {"0", "1", "manifest.mpd", "master.m3u8",
                                                "media_0.m3u8", "media_1.m3u8"}
    assert len(list((out / "0").glob("segment_*.m4s"))) == 3
    ok = cli("verify", str(out), "--reference", str(src), "--key", KEYSPEC,
             "--no-fetch-key-uris")
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-2000:]
    bad = cli("verify", str(out), "--reference", str(src), "--key",
              KEYSPEC[:-1] + ("0" if KEYSPEC[-1] != "0" else "1"), "--no-fetch-key-uris")
    assert bad.returncode != 0  # negative control


def test_native_needs_no_ffmpeg_and_is_the_default(media, tmp_path: Path) -> None:
    env_bad = {"SPEKE_PACKAGER_FFMPEG": str(tmp_path / "none"),
               "SPEKE_PACKAGER_FFPROBE": str(tmp_path / "none")}
    import os

    res = cli("encrypt-vod", str(media("h264-aac-mp4")), "-o", str(tmp_path / "out"),
              "--key", KEYSPEC, "--format", "dash", "--quiet", env={**os.environ, **env_bad})
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(("name", "extra", "words"), [
    ("h264-aac-ts", [], "reads .m4a, .m4v, .mov, .mp4 files"),
    ("h264-aac-mp4", ["--scheme", "sample-aes", "--key-uri", _KEY_URI], "needs MPEG-TS"),
])
def test_native_refuses_what_it_cannot_do(name: str, extra: list[str], words: str, media,
                                          tmp_path: Path) -> None:
    res = cli("encrypt-vod", str(media(name)), "-o", str(tmp_path / "out"), "--key", KEYSPEC,
              "--segmenter", "native", *extra)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "--segmenter ffmpeg" in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_bad_segmenter_value(media, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="native or ffmpeg"):
        encrypt_vod(VodOptions(input=media("h264-aac-mp4"), output=tmp_path / "o",
                               scheme=Scheme.CENC, segmenter="gpac"),
                    raw_keyset([KEYSPEC], Scheme.CENC))


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_output_does_not_depend_on_workers(media, tmp_path: Path) -> None:
    src = media("h264-aac-mp4")
    trees = []
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        encrypt_vod(VodOptions(input=src, output=out, scheme=Scheme.CBCS, iv=IV, jobs=jobs,
                               segment_duration=2, key_uri=_KEY_URI),
                    raw_keyset([KEYSPEC], Scheme.CBCS))
        trees.append(_tree(out))
    assert trees[0] == trees[1]


def test_memory_is_bounded_by_a_segment(tmp_path: Path) -> None:
    """A 2-minute, ~60 MB progressive file: the traced peak stays far below the mdat."""
    src = tmp_path / "long.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=640x360:rate=25:duration=120", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=120", "-c:v", "libx264", "-preset",
                    "ultrafast", "-qp", "0", "-g", "50", "-c:a", "aac", str(src)], check=True)
    size = src.stat().st_size
    assert size > 50 << 20, size
    out = tmp_path / "out"
    tracemalloc.start()
    try:
        encrypt_vod(VodOptions(input=src, output=out, scheme=Scheme.CENC,
                               format=OutputFormat.DASH, jobs=1, segment_duration=4),
                    raw_keyset([KEYSPEC], Scheme.CENC))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    biggest = max(p.stat().st_size for p in (out / "0").glob("segment_*.m4s"))
    # a few segment-sized buffers (read, cipher output), never the whole file
    assert peak < 6 * biggest + (8 << 20), (peak, biggest, size)
    assert peak < size / 3, (peak, size)


def test_clear_lead(media, tmp_path: Path) -> None:
    """--clear-lead with the native segmenter: the first segment of each track stays clear
    (no senc, the clear sample entry), the rest is encrypted; every frame decrypts."""
    from .conftest import KEY, concat, frames

    src = media("h264-aac-mp4")
    out = tmp_path / "out"
    encrypt_vod(VodOptions(input=src, output=out, scheme=Scheme.CENC, format=OutputFormat.DASH,
                           segment_duration=2, clear_lead=2, jobs=1),
                raw_keyset([KEYSPEC], Scheme.CENC))
    for rep, stream in (("0", "v:0"), ("1", "a:0")):
        segs = sorted((out / rep).glob("segment_*.m4s"))
        assert b"senc" not in segs[0].read_bytes()
        assert all(b"senc" in s.read_bytes() for s in segs[1:])
        track = concat(tmp_path / f"t{rep}.mp4", [out / rep / "init.mp4", *segs])
        ref = frames(src, stream)
        assert ref and frames(track, stream, key=KEY) == ref


@pytest.mark.parametrize("name", ["h264-2res-aac-mp4", "eac3-prog-mp4"])
def test_several_videos_and_audio_only_verify(name: str, media, tmp_path: Path) -> None:
    """Two video tracks (SD, HD) with one audio, and an audio-only file: HLS + DASH from the
    native segmenter pass verify."""
    from tests.mp4 import progressive  # noqa: F401 (registers eac3-prog-mp4)

    src = media(name)
    out = tmp_path / "out"
    r = encrypt_vod(VodOptions(input=src, output=out, scheme=Scheme.CBCS, segment_duration=2,
                               key_uri=_KEY_URI),
                    raw_keyset([KEYSPEC], Scheme.CBCS))
    kinds = sorted(t.kind for t in r.tracks)
    assert kinds == (["audio", "audio", "video", "video", "video", "video"]
                     if name.startswith("h264") else ["audio", "audio"])
    master = (out / "master.m3u8").read_text()
    assert master.count("#EXT-X-STREAM-INF") == (2 if name.startswith("h264") else 1)
    ok = cli("verify", str(out), "--reference", str(src), "--key", KEYSPEC,
             "--no-fetch-key-uris")
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-2000:]
