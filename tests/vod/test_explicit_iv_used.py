"""The explicitIV we send and the key server echoes is the IV the media is encrypted with:
fMP4 cbcs ``tenc`` constant IV (FairPlay) and the MPEG-TS SAMPLE-AES ``EXT-X-KEY`` IV."""

from __future__ import annotations

from pathlib import Path

from speke_packager.constants import DrmSystem, Packaging, Scheme
from speke_packager.keys import EncryptionContract, SpekeClient
from speke_packager.pipeline.options import OutputFormat, VodOptions
from speke_packager.pipeline.vod import encrypt_vod

from .conftest import key_lines, tenc


def test_fairplay_fmp4_constant_iv_is_the_echoed_iv(keyserver, packages,  # type: ignore[no-untyped-def]
                                                    tmp_path: Path) -> None:
    keys = SpekeClient(keyserver.speke_url, retries=0).fetch(EncryptionContract(
        "movie-iv", (DrmSystem.FAIRPLAY,), (Packaging.HLS_FMP4,), Scheme.CBCS,
        video_preset="SHARED", audio_preset="SHARED"))
    ivs = {e.kid: e.key.iv for e in keys.entries}
    assert all(iv is not None and len(iv) == 16 for iv in ivs.values())
    out = tmp_path / "out"
    encrypt_vod(VodOptions(input=packages("hls-fmp4"), output=out, scheme=Scheme.CBCS,
                           format=OutputFormat.HLS, jobs=1), keys)
    inits = sorted(out.rglob("init*.mp4"))
    assert inits
    for init in inits:
        t = tenc(init.read_bytes())
        assert t["iv_size"] == 0 and t["constant_iv"] == ivs[t["kid"]]  # type: ignore[index]


def test_sample_aes_ts_playlist_iv_is_the_echoed_iv(keyserver, packages,  # type: ignore[no-untyped-def]
                                                    tmp_path: Path) -> None:
    keys = SpekeClient(keyserver.speke_url, retries=0).fetch(EncryptionContract(
        "movie-iv", (DrmSystem.FAIRPLAY, DrmSystem.AES128), (Packaging.HLS_TS,),
        Scheme.SAMPLE_AES, video_preset="SHARED", audio_preset="SHARED"))
    ivs = {e.key.iv.hex().upper() for e in keys.entries if e.key.iv}
    assert len(ivs) == len(keys.entries)
    out = tmp_path / "out"
    encrypt_vod(VodOptions(input=packages("hls-ts"), output=out, scheme=Scheme.SAMPLE_AES,
                           format=OutputFormat.HLS, jobs=1), keys)
    lines = [k for p in out.rglob("*.m3u8") for k in key_lines(p.read_text())]
    ident = [k for k in lines if k.get("KEYFORMAT", "identity") == "identity"]
    assert ident and all(k["IV"].upper().removeprefix("0X") in ivs for k in ident)
