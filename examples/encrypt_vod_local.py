"""Encrypt a short sample asset to HLS + DASH with SPEKE v2 multi-DRM keys from the local key
server, using the library API that ``speke-packager encrypt-vod`` calls (``encrypt_vod`` with
a ``SpekeKeys`` source).

    python examples/encrypt_vod_local.py [OUTPUT_DIR] [KEY_SERVER_PORT]

Nothing is downloaded: the asset is made with ffmpeg's test sources, the key server runs in this
process on 127.0.0.1 (default port 8090, so the licence URL in the package stays valid when you
start ``speke-packager keyserver`` on that port again: keys derive from seed, content id and KID).
Keys are never printed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from speke_packager._tools import find_tool
from speke_packager.constants import DrmSystem, Scheme, SpekeVersion
from speke_packager.keys import EncryptionContract, SpekeClient
from speke_packager.keyserver import KeyServer
from speke_packager.pipeline import SpekeKeys, VodOptions, encrypt_vod


def make_sample(path: Path) -> Path:
    """4 s of H.264 320x180 + stereo AAC, key frame every 2 s."""
    ffmpeg = find_tool("ffmpeg")
    assert ffmpeg is not None
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=4",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4",
                    "-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-keyint_min", "50",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", str(path)],
                   check=True)
    return path


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "encrypted-sample").resolve()
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 8090
    with tempfile.TemporaryDirectory() as work, KeyServer(host="127.0.0.1", port=port) as ks:
        sample = make_sample(Path(work) / "sample.mp4")
        # encrypt_vod asks for the packaging and scheme of the output (here DASH + HLS fMP4,
        # cbcs) and refuses, before anything is fetched or written, a DRM system the output
        # cannot signal with the scheme (as `speke-packager encrypt-vod` does)
        contract = EncryptionContract(
            content_id="sample-1",
            drm=(DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.FAIRPLAY,
                 DrmSystem.CLEARKEY, DrmSystem.AES128),  # AES128: identity tags (Shaka HLS)
            version=SpekeVersion.V2_0,
            video_preset="PRESET-VIDEO-1",
            audio_preset="PRESET-AUDIO-1",
        )
        result = encrypt_vod(
            VodOptions(input=sample, output=out, scheme=Scheme.CBCS, segment_duration=2,
                       force=True),
            SpekeKeys(SpekeClient(ks.speke_url), contract),
        )
    print(f"encrypted package: {result.output}")
    for m in result.manifests:
        print(f"  {m}")
    for t in result.tracks:
        print(f"  {t.manifest}: {t.kind} {t.codec} KID {t.kid}")
    print("play it (ClearKey through the local key server, same seed as here):")
    print(f"  speke-packager keyserver --port {port} --content-id sample-1 &")
    print(f"  speke-packager serve {result.output} --player shaka")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
