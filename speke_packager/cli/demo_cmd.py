"""``demo``: the main job on a built-in default, fully offline.

1. generates a short clear sample asset with ffmpeg (H.264 720p + 360p, AAC stereo),
2. starts the local SPEKE key server on 127.0.0.1,
3. fetches a SPEKE v2.0 multi-DRM key set (Widevine, PlayReady, FairPlay, ClearKey;
   PRESET-VIDEO-2 + PRESET-AUDIO-1: separate SD, HD and audio keys) and prints it (no keys),
4. encrypts the asset to HLS and DASH with ``encrypt-vod`` (cbcs, CMAF segments),
5. verifies the package with independent decryption (``verify``),
6. plays the DASH package with Shaka Player and the HLS package with hls.js in headless
   Chromium (ClearKey) and prints how to play it yourself.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from .._io import check_output_folder
from .._tools import FFMPEG_DEMO, FFPROBE_VERIFY, find_tool
from ..constants import DrmSystem, Packaging, Scheme, SpekeVersion
from ..errors import ToolError

DEMO_CONTENT_ID = "speke-packager-demo"
DEMO_SEED = "speke-packager-demo"
DEMO_PORT = 8099


def make_sample(directory: Path, seconds: float) -> Path:
    """A clear MP4 with two video renditions (1280x720, 640x360) and one AAC stereo track."""
    ffmpeg = find_tool("ffmpeg", FFMPEG_DEMO)
    assert ffmpeg
    out = directory / "sample.mp4"
    cmd = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-filter_complex", "[0:v]split=2[hd][sd0];[sd0]scale=640:360[sd]",
        "-map", "[hd]", "-map", "[sd]", "-map", "1:a",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "50",
        "-keyint_min", "50", "-sc_threshold", "0",
        "-b:v:0", "2500k", "-b:v:1", "700k", "-c:a", "aac", "-b:a", "128k", "-ac", "2",
        str(out),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise ToolError(f"ffmpeg could not make the sample asset: {res.stderr.strip()[-300:]}")
    return out


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _playback_missing() -> str | None:
    """Why the playback step cannot run here (one line), or None: it needs Chromium, the
    playwright package (``speke-packager[tools]``) and the npm players."""
    import importlib.util
    import os

    exe = os.environ.get("SPEKE_PACKAGER_CHROMIUM") or "/usr/bin/chromium"
    if not (os.path.isfile(exe) or shutil.which(exe)):
        return (f"Chromium not found at {exe} (install Debian's chromium or set "
                "SPEKE_PACKAGER_CHROMIUM)")
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install 'speke-packager[tools]')"
    from ..verify.serve import find_node_modules

    try:
        find_node_modules()
    except ToolError as exc:
        return str(exc)
    return None


def _playback_check(out_dir: Path, license_url: str) -> int | None:
    """Play the DASH package with Shaka Player (licences through the MPD's own Laurl) and the
    HLS package with hls.js (ClearKey licences from ``license_url``: an HLS ClearKey tag names
    only the KID) in headless Chromium. Skipped (None) with one line naming what is missing
    when Chromium, playwright or the npm players are not there: the package is written and
    verified by then, and playback is the only step that needs them."""
    from . import main as cli_main

    missing = _playback_missing()
    if missing is not None:
        print(f"[6/6] playback check skipped: {missing}")
        return None
    print("[6/6] headless Chromium: Shaka Player plays the DASH package, hls.js the HLS one "
          "(ClearKey)", flush=True)
    rc = cli_main(["serve", str(out_dir), "--player", "shaka", "--check", "--port", "0",
                   "--seconds", "4"])
    if rc != 0:
        return rc
    return cli_main(["serve", str(out_dir), "--player", "hlsjs", "--manifest", "master.m3u8",
                     "--license-url", license_url, "--check", "--port", "0", "--seconds", "4"])


def _handler(args: argparse.Namespace) -> int:
    from ..keys import EncryptionContract, SpekeClient
    from ..keyserver import KeyServer
    from . import main as cli_main
    from .keys_cmd import keyset_to_json

    out_dir: Path = args.output.absolute()
    check_output_folder(out_dir, force=args.force)  # now, not after the sample is made
    find_tool("ffmpeg", FFMPEG_DEMO)  # one line now, not after the key server has started
    find_tool("ffprobe", FFPROBE_VERIFY)
    work = Path(tempfile.mkdtemp(prefix="speke-demo-"))
    port = args.port if args.port is not None else (DEMO_PORT if _port_free(DEMO_PORT) else 0)
    try:
        print(f"[1/6] generating a {args.seconds:g} s sample asset with ffmpeg ...", flush=True)
        sample = make_sample(work, args.seconds)
        with KeyServer(host="127.0.0.1", port=port, seed=DEMO_SEED,
                       default_content_id=DEMO_CONTENT_ID) as ks:
            print(f"[2/6] local SPEKE key server listening on {ks.url}", flush=True)
            drm = (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.FAIRPLAY,
                   DrmSystem.CLEARKEY)
            contract = EncryptionContract(
                content_id=DEMO_CONTENT_ID, drm=drm,
                packaging=(Packaging.DASH, Packaging.HLS_FMP4), scheme=Scheme.CBCS,
                version=SpekeVersion.V2_0, video_preset="PRESET-VIDEO-2",
                audio_preset="PRESET-AUDIO-1",
            )
            keyset = SpekeClient(ks.speke_url).fetch(contract)
            print(f"[3/6] SPEKE v2.0 key set for {DEMO_CONTENT_ID!r} (keys not shown):")
            for entry in keyset_to_json(keyset, show_keys=False)["keys"]:
                names = ", ".join(sorted(d["name"] for d in entry["drm"].values()))
                print(f"      {entry['kid']}  {entry['track_type']:<6} {names}")
            print("[4/6] encrypt-vod -> HLS + DASH (cbcs, CMAF)", flush=True)
            vod_args = [
                "encrypt-vod", str(sample), "--output", str(out_dir), "--format", "both",
                "--scheme", "cbcs", "--speke-url", ks.speke_url,
                "--content-id", DEMO_CONTENT_ID, "--drm", "widevine,playready,fairplay,clearkey",
                "--speke-version", "2.0", "--video-preset", "PRESET-VIDEO-2",
                "--audio-preset", "PRESET-AUDIO-1", "--segment-duration", "2", "--quiet",
            ]
            if args.force:
                vod_args.append("--force")
            rc = cli_main(vod_args)
            if rc != 0:
                return rc
            print("[5/6] verify: independent decryption with FFmpeg, frame hashes vs the clear "
                  "input", flush=True)
            rc = cli_main(["verify", str(out_dir), "--reference", str(sample),
                           "--speke-url", ks.speke_url, "--content-id", DEMO_CONTENT_ID,
                           "--drm", "widevine,playready,fairplay,clearkey",
                           "--video-preset", "PRESET-VIDEO-2", "--audio-preset",
                           "PRESET-AUDIO-1"])
            if rc != 0:
                return rc
            played = _playback_check(out_dir, ks.url + "/clearkey/license")
            if played not in (0, None):
                return played
            used_port = ks.port
        print()
        print(f"Encrypted package: {out_dir}")
        for p in sorted(out_dir.glob("*.m3u8"))[:1] + sorted(out_dir.glob("*.mpd"))[:1]:
            print(f"  {p.name}")
        print("Play it in a browser (ClearKey licences from the local key server, which derives")
        print("the same keys again from its seed and the content id):")
        print(f"  speke-packager keyserver --port {used_port} --seed {DEMO_SEED} "
              f"--content-id {DEMO_CONTENT_ID} &")
        print(f"  speke-packager serve {out_dir} --player shaka --port 8080"
              "   # then open the printed URL")
        print(f"  speke-packager serve {out_dir} --player hlsjs --manifest master.m3u8 "
              f"--license-url http://127.0.0.1:{used_port}/clearkey/license --port 8081")
        print(f"Headless check: speke-packager serve {out_dir} --player shaka --check")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo", help="offline end-to-end demo: key server + sample asset -> HLS + DASH",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--output", type=Path, default=Path("demo-output"),
                   help="package folder (default ./demo-output)")
    p.add_argument("--seconds", type=float, default=12.0, help="sample length (default 12)")
    p.add_argument("--port", type=int, default=None,
                   help=f"key server port (default {DEMO_PORT}, or any free port)")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    p.set_defaults(func=_handler)

