"""Each example runs with no arguments in a fresh folder, exits 0, and what it writes is what
it claims: embed_segment's cbcs segments decrypt (FFmpeg, per key period) to the clear source,
live_rotation's playlist decrypts (FFmpeg's HLS reader, keys from the key server's seed) to the
clear segments, fetch_keys prints the multi-DRM table, encrypt_vod_local's video decrypts with
the key server's key. No example prints a key."""

from __future__ import annotations

import base64
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from uuid import UUID

import pytest

from fixtures.media import framemd5
from speke_packager.constants import Scheme
from speke_packager.keyserver import derive_key
from speke_packager.manifests.hls import HlsKey
from speke_packager.media.mp4 import Mp4Decryptor, Mp4Encryptor, probe_init
from speke_packager.model import ContentKey

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
HLS_INPUT = ("-allowed_extensions", "ALL", "-protocol_whitelist", "file,crypto,data")

pytestmark = pytest.mark.interop


def _run(name: str, cwd: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout + res.stderr


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _no_key(text: str, keys: list[bytes]) -> None:
    for key in keys:
        for form in (key.hex(), key.hex().upper(), base64.b64encode(key).decode(),
                     base64.urlsafe_b64encode(key).decode().rstrip("=")):
            assert form not in text


def _frames(path: Path, key: bytes | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    try:
        return framemd5(path, "v:0", extra_input_args=extra, keys=key)
    except RuntimeError:
        return []


def _key_tags(text: str) -> list[HlsKey]:
    return [HlsKey.parse(ln) for ln in text.splitlines() if ln.startswith("#EXT-X-KEY:")]


def test_embed_segment(tmp_path: Path) -> None:
    out_text = _run("embed_segment.py", tmp_path)
    ex = _module("embed_segment")
    out = tmp_path / "embed-segment-out"
    segs = [(out / f"seg{i}.m4s").read_bytes() for i in range(6)]
    init = (out / "init.mp4").read_bytes()
    tags = _key_tags((out / "index.m3u8").read_text())
    (kid0, key0), (kid1, key1) = ex.RAW_KEYS
    assert [t.uri for t in tags] == [f"keys/{kid0.hex}.bin", f"keys/{kid1.hex}.bin"]
    assert (out / "keys" / f"{kid0.hex}.bin").read_bytes() == key0
    assert (out / "keys" / f"{kid0.hex}.bin").stat().st_mode & 0o077 == 0
    clear = (out / "clear.mp4").read_bytes()
    clear_init, clear_frags = ex.split_fragments(clear)
    # period 0 as written (its init), period 1 behind an init naming KID1 and its IV (FFmpeg 8
    # decrypts with the tenc KID/IV only); each with its own key, not the other one
    track = probe_init(clear_init)[0].track_id
    alt1 = Mp4Encryptor(clear_init, Scheme.CBCS,
                        {track: ContentKey(kid1, key1, iv=tags[1].iv)}).encrypted_init()
    for p, head, key, wrong in ((0, init, key0, key1), (1, alt1, key1, key0)):
        ref_f = tmp_path / f"clear{p}.mp4"
        ref_f.write_bytes(clear_init + b"".join(clear_frags[3 * p:3 * p + 3]))
        enc_f = tmp_path / f"enc{p}.mp4"
        enc_f.write_bytes(head + b"".join(segs[3 * p:3 * p + 3]))
        ref = _frames(ref_f)
        assert len(ref) == 150
        assert _frames(enc_f, key) == ref
        assert _frames(enc_f, wrong) != ref
    # the whole stream with both keys, our decryptor as a second check
    dec = Mp4Decryptor(init, {kid0: key0, kid1: key1})
    assert [dec.decrypt_segment(s) for s in segs] == clear_frags
    _no_key(out_text, [key0, key1])


def test_live_rotation(tmp_path: Path) -> None:
    out_text = _run("live_rotation.py", tmp_path)
    ex = _module("live_rotation")
    out = tmp_path / "live-rotation-out"
    text = (out / "live.m3u8").read_text()
    assert "#EXT-X-MEDIA-SEQUENCE:2" in text and text.rstrip().endswith("#EXT-X-ENDLIST")
    tags = _key_tags(text)
    identity = [t for t in tags if t.effective_keyformat == "identity"]
    fairplay = [t for t in tags if t.effective_keyformat != "identity"]
    assert len(identity) == len(fairplay) == 3  # three periods in the window, full set each
    kids = [UUID(re.sub(r".*/keys/", "", t.uri or "")) for t in identity]
    keys = [derive_key(ex.SEED, ex.CONTENT_ID, k) for k in kids]
    assert len(set(kids)) == len(set(keys)) == 3
    # a test copy for FFmpeg: the key server is gone, so each identity URI becomes a local
    # file holding the key server's key for that KID; FairPlay tags are dropped
    copy_lines = []
    for ln in text.splitlines():
        if ln.startswith("#EXT-X-KEY:") and "streamingkeydelivery" in ln:
            continue
        for kid, key in zip(kids, keys, strict=True):
            if ln.startswith("#EXT-X-KEY:") and kid.hex in ln:
                kf = tmp_path / f"{kid.hex}.key"
                kf.write_bytes(key)
                ln = re.sub(r'URI="[^"]*"', f'URI="{kf}"', ln)
        copy_lines.append(ln)
    copy = out / "copy.m3u8"
    copy.write_text("\n".join(copy_lines) + "\n")
    clear = out / "clear" / "window.m3u8"  # the same six clear segments
    clear.write_text("\n".join(["#EXTM3U", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:2",
                                *[f"#EXTINF:2.000,\nseg{i}.ts" for i in range(2, 8)],
                                "#EXT-X-ENDLIST"]) + "\n")
    assert framemd5(copy, "a:0", extra_input_args=HLS_INPUT) == framemd5(clear, "a:0")
    ref_v = _frames(clear)
    got_v = _frames(copy, extra=HLS_INPUT)
    assert len(ref_v) == len(got_v) == 300
    # all frames but those around the last video PES before each key change and the end, which
    # FFmpeg's SAMPLE-AES path leaves encrypted (media-encryption.md §9; see tests/live)
    bad = [i for i, (a, b) in enumerate(zip(ref_v, got_v, strict=True)) if a != b]
    assert all(i % 100 >= 95 for i in bad) and len(bad) <= 6, bad
    # a wrong key (period 0's tag pointed at period 1's key) breaks it
    wrong = copy.read_text().replace(f"{kids[0].hex}.key", f"{kids[1].hex}.key")
    copy.write_text(wrong)
    assert _frames(copy, extra=HLS_INPUT) != got_v
    _no_key(out_text, keys)


def test_fetch_keys(tmp_path: Path) -> None:
    text = _run("fetch_keys.py", tmp_path)
    lines = text.splitlines()
    assert "3 keys" in lines[0]
    assert lines[1].split() == ["TRACK", "PERIOD", "KID", "widevine", "playready", "fairplay",
                                "clearkey"]
    rows = [ln.split() for ln in lines[2:]]
    assert [r[0] for r in rows] == ["SD", "HD", "AUDIO"]
    kids = [UUID(r[2]) for r in rows]
    assert len(set(kids)) == 3 and all(r[1] == "0" for r in rows)
    for r in rows:
        assert r[3].startswith("pssh") and "HLS" in r[3] and "CPD" in r[3]
        assert r[5] == "HLS"
    _no_key(text, [derive_key("speke-packager", "fetch-keys-example", k) for k in kids])


def test_encrypt_vod_local(tmp_path: Path) -> None:
    """encrypt_vod with a SpekeKeys source: the contract gets the output's packaging (DASH +
    HLS fMP4, cbcs), every DRM system is signalled where it can be, and the video decrypts
    with the key server's key for the KID it names (a wrong key does not)."""
    from speke_packager.constants import DASHIF_CLEARKEY, PLAYREADY, WIDEVINE

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, str(EXAMPLES / "encrypt_vod_local.py"), "out", "0"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "out"
    video = re.search(r"manifest\.mpd#\d+: video avc1 KID (\S+)", res.stdout)
    assert video is not None, res.stdout
    kid = UUID(video.group(1))
    mpd = (out / "manifest.mpd").read_text()
    for system_id in (WIDEVINE, PLAYREADY, DASHIF_CLEARKEY):
        assert f"urn:uuid:{system_id}" in mpd.lower(), system_id
    assert str(kid) in mpd
    media = "".join(p.read_text() for p in out.glob("media_*.m3u8"))
    assert 'KEYFORMAT="com.apple.streamingkeydelivery"' in media
    assert 'KEYFORMAT="identity"' in media
    key = derive_key("speke-packager", "sample-1", kid)
    rep = next(d for d in sorted(out.iterdir()) if d.is_dir()
               and probe_init((d / "init.mp4").read_bytes())[0].kind.value == "video")
    enc = tmp_path / "video.mp4"
    enc.write_bytes(b"".join(p.read_bytes() for p in
                             [rep / "init.mp4", *sorted(rep.glob("segment_*.m4s"))]))
    frames = _frames(enc, key)
    assert len(frames) == 100  # 4 s at 25 fps
    assert _frames(enc, bytes(16)) != frames
    _no_key(res.stdout + res.stderr, [key])


def test_ffmpeg_live(tmp_path: Path) -> None:
    """FFmpeg in real time -> FolderWatcher -> LivePackager, keys rotating every 2 s here (10 s
    by default): the playlists and the MPD end, each key change has its own init and key tags,
    and every video and audio segment decrypts (FFmpeg, behind the init its playlist names)
    with its own period's key to the clear segment's frames, not with another period's key."""
    out_text = _run("ffmpeg_live.py", tmp_path, "out", "--seconds", "6", "--rotation", "2",
                    "--segment", "1")
    ex = _module("ffmpeg_live")
    out = tmp_path / "out"
    assert "speke-packager serve" in out_text and "--license-url" in out_text
    mpd = (out / "manifest.mpd").read_text()
    assert 'type="static"' in mpd and mpd.count("<Period ") >= 3
    for rendition, track, stream in (("video", 0, "v:0"), ("audio", 1, "a:0")):
        text = (out / f"{rendition}.m3u8").read_text()
        assert text.rstrip().endswith("#EXT-X-ENDLIST")
        names = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        assert names == [f"{rendition}/{i}.m4s" for i in range(len(names))]
        assert len(names) >= 5
        maps: dict[str, str] = {}
        cur = ""
        for ln in text.splitlines():
            if ln.startswith("#EXT-X-MAP:"):
                cur = re.sub(r'.*URI="([^"]*)".*', r"\1", ln)
            elif ln in names:
                maps[ln] = cur
        kids = []
        for name in names:
            init = (out / maps[name]).read_bytes()
            tenc = re.search(rb"tenc", init)
            assert tenc is not None
            kids.append(UUID(bytes=init[tenc.end() + 8:tenc.end() + 24]))
        assert len(set(kids)) >= 3 and len({maps[nm] for nm in names}) == len(set(kids))
        keys = {k: derive_key(ex.SEED, ex.CONTENT_ID, k) for k in set(kids)}
        clear_init = (out / "clear" / f"init_{track}.mp4").read_bytes()
        for i, (name, kid) in enumerate(zip(names, kids, strict=True)):
            enc_f = tmp_path / f"enc-{rendition}{i}.mp4"
            clear_f = tmp_path / f"clear-{rendition}{i}.mp4"
            enc_f.write_bytes((out / maps[name]).read_bytes() + (out / name).read_bytes())
            clear_f.write_bytes(clear_init + (out / "clear" / f"seg_{track}_{i}.m4s").read_bytes())
            ref = framemd5(clear_f, stream)
            assert ref
            assert _frames_of(enc_f, stream, keys[kid]) == ref, (rendition, i)
            wrong = next(v for k, v in keys.items() if k != kid)
            if len(ref) >= 10:  # (FFmpeg's last audio segment can be one frame of silence
                # under 16 bytes, which cbcs leaves clear)
                assert _frames_of(enc_f, stream, wrong) != ref
        _no_key(out_text, list(keys.values()))


def _frames_of(path: Path, stream: str, key: bytes) -> list[str]:
    try:
        return framemd5(path, stream, keys=key)
    except RuntimeError:
        return []
