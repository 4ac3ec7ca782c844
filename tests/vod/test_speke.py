"""encrypt-vod with keys from the local SPEKE key server: v2 multi-DRM multi-key (presets,
tracks classified by their real resolution), v1 signaling, identity keys over HTTP."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from uuid import UUID

import pytest
from lxml import etree

from speke_packager.constants import (
    NS_CENC,
    NS_DASHIF_CPS,
    NS_MPD,
    NS_MSPR,
    DrmSystem,
    Packaging,
    Scheme,
    SpekeVersion,
)
from speke_packager.keys import EncryptionContract, SpekeClient
from speke_packager.model import KeySet
from tests.mpd_structure import MpdCheck

from .conftest import cli, concat, ffmpeg, frames, key_lines, pssh_boxes, run, tenc

NS = {"m": NS_MPD, "cenc": NS_CENC, "mspr": NS_MSPR, "dashif": NS_DASHIF_CPS}
CID = "movie-2026"
DRMS = "widevine,playready,fairplay,clearkey"


def _keyset(ks: object, *, drm: str, version: str, scheme: str, packaging: tuple[Packaging, ...],
            video: str = "PRESET-VIDEO-1", audio: str = "PRESET-AUDIO-1") -> KeySet:
    """The same request encrypt-vod sends, made here to know the KIDs and the signaling."""
    contract = EncryptionContract(content_id=CID, drm=tuple(DrmSystem.from_name(d) for d in
                                                             drm.split(",")),
                                  packaging=packaging, scheme=Scheme(scheme),
                                  version=SpekeVersion(version), video_preset=video,
                                  audio_preset=audio)
    return SpekeClient(ks.speke_url).fetch(contract)  # type: ignore[attr-defined]


def _speke_args(ks: object, *, drm: str, version: str, video: str = "PRESET-VIDEO-1",
                audio: str = "PRESET-AUDIO-1") -> list[str]:
    return ["--speke-url", ks.speke_url, "--content-id", CID, "--drm", drm,  # type: ignore
            "--speke-version", version, "--video-preset", video, "--audio-preset", audio]


def _entry(ks: KeySet, track_type: str):  # type: ignore[no-untyped-def]
    (e,) = [e for e in ks.entries if e.track_type == track_type]
    return e


def _sd_hd_dash_package(src: Path, out: Path) -> Path:
    """Both video resolutions in ONE AdaptationSet (the pipeline must split it by key)."""
    out.mkdir()
    run([ffmpeg(), "-hide_banner", "-loglevel", "error", "-i", str(src), "-map", "0:v:0",
         "-map", "0:v:1", "-map", "0:a:0", "-c", "copy", "-f", "dash", "-seg_duration", "2",
         "-adaptation_sets", "id=0,streams=v id=1,streams=a", "manifest.mpd"], cwd=out)
    return out / "manifest.mpd"


def test_v2_multi_key_multi_drm_dash(keyserver, media, tmp_path: Path,
                                     check_mpd: MpdCheck) -> None:
    src = media("h264-2res-aac-mp4")
    mpd = _sd_hd_dash_package(src, tmp_path / "clear")
    out = tmp_path / "out"
    res = cli("encrypt-vod", str(mpd), "-o", str(out), "--scheme", "cbcs", "--json",
              *_speke_args(keyserver, drm="widevine,playready,clearkey", version="2.0",
                           video="PRESET-VIDEO-2"))
    assert res.returncode == 0, res.stderr
    keys = _keyset(keyserver, drm="widevine,playready,clearkey", version="2.0", scheme="cbcs",
                   packaging=(Packaging.DASH,), video="PRESET-VIDEO-2")
    for e in keys.entries:  # no key in any output
        assert e.key.key.hex() not in res.stdout + res.stderr
        assert base64.b64encode(e.key.key).decode() not in res.stdout + res.stderr
    sd, hd, audio = (_entry(keys, t) for t in ("SD", "HD", "AUDIO"))
    doc = etree.parse(str(out / "manifest.mpd"))
    check_mpd(doc)
    sets = doc.findall(".//m:AdaptationSet", NS)
    assert len(sets) == 3  # the video set was split: one KID per AdaptationSet
    by_kid = {}
    for aset in sets:
        cps = aset.findall("m:ContentProtection", NS)
        kid = UUID(cps[0].get(f"{{{NS_CENC}}}default_KID"))
        reps = aset.findall("m:Representation", NS)
        assert len(reps) == 1
        by_kid[kid] = reps[0]
        e = keys.by_kid(kid)
        wv = e.signal(DrmSystem.WIDEVINE)
        pr = e.signal(DrmSystem.PLAYREADY)
        assert wv and pr and wv.pssh and pr.pssh
        uris = {c.get("schemeIdUri"): c for c in cps}
        w = uris[f"urn:uuid:{DrmSystem.WIDEVINE.system_id}"]
        assert base64.b64decode(w.findtext("cenc:pssh", namespaces=NS) or "") == wv.pssh
        p = uris[f"urn:uuid:{DrmSystem.PLAYREADY.system_id}"]
        assert p.findtext("mspr:pro", namespaces=NS)
        ck = uris["urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e"]
        assert ck.findtext("dashif:Laurl", namespaces=NS) == keyserver.clearkey_license_url
        # pssh boxes of the key server are in the init segment too
        rid = reps[0].get("id")
        init = (out / f"init-stream{rid}.m4s").read_bytes()
        assert wv.pssh in pssh_boxes(init) and pr.pssh in pssh_boxes(init)
        assert tenc(init)["kid"] == kid
    # tracks were classified by their real resolution
    assert by_kid[sd.kid].get("width") == "320" and by_kid[hd.kid].get("width") == "1280"
    assert by_kid[audio.kid].get("mimeType") == "audio/mp4"
    for e, rid, stream, ref_stream in ((sd, "0", "v:0", "v:0"), (hd, "1", "v:0", "v:1"),
                                       (audio, "2", "a:0", "a:0")):
        track = concat(tmp_path / f"t{rid}.mp4", [out / f"init-stream{rid}.m4s",
                                                   *sorted(out.glob(f"chunk-stream{rid}-*"))])
        ref = frames(src, ref_stream)
        assert ref
        assert frames(track, stream, key=keyserver.key_for(CID, e.kid)) == ref
        other = audio if e is not audio else sd
        assert frames(track, stream, key=keyserver.key_for(CID, other.kid)) != ref


def test_v2_hls_signaling_verbatim(keyserver, media, tmp_path: Path) -> None:
    src = media("h264-aac-mp4")
    out = tmp_path / "out"
    res = cli("encrypt-vod", str(src), "-o", str(out), "--scheme", "cbcs", "--format", "hls",
              "--segment-duration", "2", "--quiet",
              *_speke_args(keyserver, drm=DRMS, version="2.0"))
    assert res.returncode == 0, res.stderr
    keys = _keyset(keyserver, drm=DRMS, version="2.0", scheme="cbcs",
                   packaging=(Packaging.HLS_FMP4,))
    for name, track_type, rep in (("media_0.m3u8", "VIDEO", "0"), ("media_1.m3u8", "AUDIO", "1")):
        e = _entry(keys, track_type)
        text = (out / name).read_text()
        init = (out / rep / "init.mp4").read_bytes()
        iv = tenc(init)["constant_iv"]
        assert isinstance(iv, bytes) and len(iv) == 16
        lines = [ln for ln in text.splitlines() if ln.startswith("#EXT-X-KEY")]
        expected = []
        # the explicitIV is random per request (ours, echoed by the key server into its lines):
        # compare the lines without it, and check every IV the playlist carries is the media's
        no_iv = re.compile(r",IV=0x[0-9A-Fa-f]{32}")
        for s in e.drm:
            assert s.hls_media
            expected += [no_iv.sub("", ln) for ln in s.hls_media.splitlines()]
        assert [no_iv.sub("", ln) for ln in lines] == expected  # as the key server wrote them
        for ln in lines:
            if "com.apple.streamingkeydelivery" not in ln:
                assert f"IV=0x{iv.hex().upper()}" in ln.upper().replace("0X", "0x")
        formats = {k["KEYFORMAT"] for k in key_lines(text)}
        assert formats == {f"urn:uuid:{DrmSystem.WIDEVINE.system_id}", "com.microsoft.playready",
                           "com.apple.streamingkeydelivery", "org.w3.clearkey"}
        track = concat(tmp_path / f"{rep}.mp4", [out / rep / "init.mp4",
                                                 *sorted((out / rep).glob("segment_*.m4s"))])
        stream = "v:0" if rep == "0" else "a:0"
        ref = frames(src, stream)
        assert frames(track, stream, key=keyserver.key_for(CID, e.kid)) == ref
    master = (out / "master.m3u8").read_text()
    session = [ln for ln in master.splitlines() if ln.startswith("#EXT-X-SESSION-KEY")]
    assert len(session) == 8 and len(set(session)) == 8  # 2 keys x 4 DRMs, no duplicates


def test_v1_cbcs_hls_built_tags(keyserver, packages, tmp_path: Path) -> None:
    manifest = packages("hls-fmp4")
    out = tmp_path / "out"
    res = cli("encrypt-vod", str(manifest), "-o", str(out), "--scheme", "cbcs", "--quiet",
              *_speke_args(keyserver, drm="fairplay,widevine", version="1.0"))
    assert res.returncode == 0, res.stderr
    keys = _keyset(keyserver, drm="fairplay,widevine", version="1.0", scheme="cbcs",
                   packaging=(Packaging.HLS_FMP4,))
    (e,) = keys.entries
    fp = e.signal(DrmSystem.FAIRPLAY)
    assert fp and fp.uri_ext_x_key
    text = (out / "index.m3u8").read_text()
    tags = key_lines(text)
    assert {t["KEYFORMAT"] for t in tags} == {"com.apple.streamingkeydelivery",
                                              f"urn:uuid:{DrmSystem.WIDEVINE.system_id}"}
    fair = next(t for t in tags if t["KEYFORMAT"] == "com.apple.streamingkeydelivery")
    assert fair["URI"] == fp.uri_ext_x_key and fair["METHOD"] == "SAMPLE-AES"
    init = (out / "init.mp4").read_bytes()
    assert tenc(init)["kid"] == e.kid
    segs = sorted(out.glob("seg_*.m4s"))
    track = concat(tmp_path / "t.mp4", [out / "init.mp4", *segs])
    clear = concat(tmp_path / "c.mp4", [manifest.parent / "init.mp4",
                                        *sorted(manifest.parent.glob("seg_*.m4s"))])
    for stream in ("v:0", "a:0"):
        assert frames(track, stream, key=keyserver.key_for(CID, e.kid)) == frames(clear, stream)


@pytest.mark.parametrize("version, scheme", [("1.0", "aes-128"), ("2.0", "sample-aes")])
def test_identity_key_over_http(version: str, scheme: str, keyserver, packages,
                                tmp_path: Path) -> None:
    manifest = packages("hls-multivariant-ts")
    out = tmp_path / "out"
    drm = "aes-128" if scheme == "aes-128" else "fairplay,aes-128"
    res = cli("encrypt-vod", str(manifest), "-o", str(out), "--scheme", scheme, "--quiet",
              *_speke_args(keyserver, drm=drm, version=version))
    assert res.returncode == 0, res.stderr
    audio = out / "v1" / "index.m3u8"
    text = audio.read_text()
    ident = [k for k in key_lines(text) if k.get("KEYFORMAT", "identity") == "identity"]
    assert len(ident) == 1 and ident[0]["URI"].startswith(keyserver.url)
    assert "IV" in ident[0]  # explicit IV, never the sequence-number fallback
    master = (out / "master.m3u8").read_text()
    assert key_lines(master, "#EXT-X-SESSION-KEY")
    # FFmpeg fetches the key from the key server's HTTP endpoint and decrypts
    clear = manifest.parent / "v1" / "index.m3u8"
    assert frames(audio, "a:0", hls=True) == frames(clear, "a:0", hls=True)


def _last_segment_twice(playlist: Path) -> Path:
    lines = playlist.read_text().splitlines()
    end = lines.index("#EXT-X-ENDLIST")
    last = max(i for i, ln in enumerate(lines) if ln.startswith("#EXTINF"))
    lines[end:end] = ["#EXT-X-DISCONTINUITY", *lines[last:end]]
    copy = playlist.with_name("test-copy.m3u8")
    copy.write_text("\n".join(lines) + "\n")
    return copy


def test_v2_multi_key_sample_aes_ts_renditions(keyserver, media, tmp_path: Path) -> None:
    src = media("h264-2res-aac-mp4")
    out = tmp_path / "out"
    res = cli("encrypt-vod", str(src), "-o", str(out), "--scheme", "sample-aes",
              "--segment-duration", "2", "--json",
              *_speke_args(keyserver, drm="fairplay,aes-128", version="2.0",
                           video="PRESET-VIDEO-2"))
    assert res.returncode == 0, res.stderr
    keys = _keyset(keyserver, drm="fairplay,aes-128", version="2.0", scheme="sample-aes",
                   packaging=(Packaging.HLS_TS,), video="PRESET-VIDEO-2")
    import json

    summary = json.loads(res.stdout)
    by_manifest = {t["manifest"]: t for t in summary["tracks"]}
    assert by_manifest["video0/index.m3u8"]["kid"] == str(_entry(keys, "SD").kid)
    assert by_manifest["video1/index.m3u8"]["kid"] == str(_entry(keys, "HD").kid)
    assert by_manifest["audio0/index.m3u8"]["kid"] == str(_entry(keys, "AUDIO").kid)
    master = (out / "master.m3u8").read_text()
    assert len(key_lines(master, "#EXT-X-SESSION-KEY")) == 6  # 3 keys x (FairPlay, identity)
    for name, track_type, stream in (("video0", "SD", "v:0"), ("video1", "HD", "v:1")):
        pl = out / name / "index.m3u8"
        ident = [k for k in key_lines(pl.read_text()) if k["KEYFORMAT"] == "identity"]
        assert ident[0]["URI"] == keyserver.key_url(_entry(keys, track_type).kid)
        ref = frames(src, stream)
        assert ref
        got = frames(_last_segment_twice(pl), "v:0", hls=True)
        assert got is not None and got[:len(ref)] == ref
