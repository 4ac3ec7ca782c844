"""The folder watcher with fake encoders that write slowly: a segment is handed over only once
the encoder's manifest lists it and it stopped changing, never while it is written; deleted
segments, restarts, segments that never complete and a real FFmpeg DASH muxer."""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from pathlib import Path

import pytest

from speke_packager._tools import find_tool
from speke_packager.errors import UsageError
from speke_packager.pipeline.live.watch import (
    FolderWatcher,
    InitSegment,
    MediaSegment,
    StreamEnded,
    WatchEvent,
)

from .conftest import Rendition


def _playlist(folder: Path, names: list[str], *, first: int = 0, init: str | None = None,
              ended: bool = False, durations: float = 2.0, name: str = "live.m3u8") -> None:
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
    if init:
        lines.append(f'#EXT-X-MAP:URI="{init}"')
    for n in names:
        lines += [f"#EXTINF:{durations:.6f},", n]
    if ended:
        lines.append("#EXT-X-ENDLIST")
    tmp = folder / (name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(folder / name)  # as FFmpeg does


def _media(events: list[WatchEvent]) -> list[MediaSegment]:
    return [e for e in events if isinstance(e, MediaSegment)]


def test_partial_segment_is_not_picked_up(tmp_path: Path, live_media: dict[str, Rendition]
                                          ) -> None:
    """A writer that lists a segment before it finished writing it: the watcher waits until the
    file stopped growing for `settle` seconds, and hands over the whole file."""
    data = [live_media["ts"].data(i) for i in range(3)]
    w = FolderWatcher(tmp_path, poll_interval=0.05, settle=0.3)
    seen: list[WatchEvent] = []
    (tmp_path / "s0.ts").write_bytes(data[0])
    _playlist(tmp_path, ["s0.ts"])
    stop = threading.Event()

    def writer() -> None:  # s1.ts grows in 4 steps 0.15 s apart, listed from the start
        with (tmp_path / "s1.ts").open("wb") as f:
            _playlist(tmp_path, ["s0.ts", "s1.ts"])
            step = len(data[1]) // 4 + 1
            for i in range(0, len(data[1]), step):
                f.write(data[1][i:i + step])
                f.flush()
                time.sleep(0.15)
        (tmp_path / "s2.ts.tmp").write_bytes(data[2][:1000])  # unlisted, being written
        time.sleep(0.5)
        (tmp_path / "s2.ts.tmp").write_bytes(data[2])
        (tmp_path / "s2.ts.tmp").replace(tmp_path / "s2.ts")
        _playlist(tmp_path, ["s0.ts", "s1.ts", "s2.ts"], ended=True)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for ev in w.follow(stop=stop, idle_timeout=10):
            seen.append(ev)
    finally:
        stop.set()
        t.join()
    media = _media(seen)
    assert [m.data for m in media] == data  # whole files, each once, in order
    assert [m.sequence for m in media] == [0, 1, 2]
    assert [m.start_time for m in media] == [0.0, 2.0, 4.0]
    assert not any(m.discontinuity for m in media)
    assert isinstance(seen[-1], StreamEnded) and w.ended
    assert w.warnings == []


def test_fmp4_tfdt_times_and_deleted_segments(tmp_path: Path,
                                              live_media: dict[str, Rendition]) -> None:
    """fMP4: the init first, media time from tfdt; segments the encoder deleted before they
    were read are skipped with a warning and the next one is marked discontinuous."""
    r = live_media["video"]
    assert r.init is not None
    (tmp_path / "init.mp4").write_bytes(r.init.read_bytes())
    for i in range(6):
        (tmp_path / f"v{i}.m4s").write_bytes(r.data(i))
    _playlist(tmp_path, ["v0.m4s", "v1.m4s"], init="init.mp4")
    w = FolderWatcher(tmp_path, poll_interval=0.05, settle=0)
    ev = w.scan()
    assert isinstance(ev[0], InitSegment) and ev[0].data == r.init.read_bytes()
    assert [(m.sequence, m.start_time) for m in _media(ev)] == [(0, 0.0), (1, 2.0)]
    # the window slid by three while we were away, and v2 is already gone
    (tmp_path / "v2.m4s").unlink()
    _playlist(tmp_path, ["v2.m4s", "v3.m4s", "v4.m4s"], first=2, init="init.mp4")
    got: list[MediaSegment] = []
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        got += _media(w.scan())
        time.sleep(0.05)
    assert [(m.sequence, m.start_time) for m in got] == [(3, 6.0), (4, 8.0)]
    assert got[0].discontinuity and not got[1].discontinuity
    assert any("v2.m4s" in x and "gone" in x for x in w.warnings)


def test_restart_and_never_completing_segment(tmp_path: Path,
                                              live_media: dict[str, Rendition]) -> None:
    """An encoder restart (sequence numbers start again) marks the next segment
    discontinuous; a listed segment that stays empty is skipped after the timeout with one
    warning line."""
    data = [live_media["ts"].data(i) for i in range(4)]
    for i in range(3):
        (tmp_path / f"s{i}.ts").write_bytes(data[i])
    _playlist(tmp_path, ["s0.ts", "s1.ts", "s2.ts"])
    w = FolderWatcher(tmp_path, poll_interval=0.05, settle=0, segment_timeout=0.5)
    assert [m.sequence for m in _media(w.scan())] == [0, 1, 2]
    # restart: a new run writes s0 again (other content) and an empty s1 that never completes
    (tmp_path / "s0.ts").write_bytes(data[3])
    (tmp_path / "s1.ts").write_bytes(b"")
    _playlist(tmp_path, ["s0.ts", "s1.ts"])
    first = _media(w.scan())
    assert [(m.sequence, m.data == data[3], m.discontinuity) for m in first] == [(0, True, True)]
    time.sleep(0.7)
    assert _media(w.scan()) == []
    (warning,) = w.warnings
    assert "s1.ts" in warning and "did not complete within 0.5s" in warning
    assert "\n" not in warning


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        FolderWatcher(tmp_path / "missing")
    with pytest.raises(UsageError):
        FolderWatcher(tmp_path, poll_interval=0)


def test_ffmpeg_dash_muxer(tmp_path: Path) -> None:
    """FFmpeg's DASH muxer (live profile, SegmentTimeline, .tmp then rename) in real time:
    two representations, every segment once and complete, media time from the timeline."""
    ffmpeg = find_tool("ffmpeg")
    assert ffmpeg is not None
    proc = subprocess.Popen(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-re",
         "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=4",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4",
         "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-keyint_min", "25",
         "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-c:a", "aac",
         "-f", "dash", "-seg_duration", "1", "-streaming", "0", "-use_template", "1",
         "-use_timeline", "1", "-window_size", "0", "-remove_at_exit", "0",
         str(tmp_path / "live.mpd")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    w = FolderWatcher(tmp_path, poll_interval=0.1)
    events: list[WatchEvent] = []
    try:
        events = list(w.follow(idle_timeout=20))
    finally:
        proc.wait(30)
    assert proc.returncode == 0
    assert set(w.tracks) == {"0", "1"} and w.ended
    for track in ("0", "1"):
        mine = [e for e in events if e.track == track]
        assert isinstance(mine[0], InitSegment)
        assert isinstance(mine[-1], StreamEnded)
        media = _media(mine)
        assert len(media) >= 3
        for m in media:  # what was handed over is the final file
            assert m.data == m.path.read_bytes()
        for a, b in itertools.pairwise(media):
            assert b.sequence == a.sequence + 1
            assert b.start_time == pytest.approx(a.start_time + a.duration, abs=1e-6)
