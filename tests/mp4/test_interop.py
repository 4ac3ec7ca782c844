"""Independent decryptors (FFmpeg 8, Shaka Packager) against our cenc/cbcs output.

Decoded frame hashes of the decrypted output must equal those of the clear source; a wrong key
must not match (negative control). Where the spec fixes the bytes (cbcs with a constant IV),
our encrypted samples and subsample maps must equal Shaka Packager's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fixtures.media import packager_key_flags
from speke_packager.constants import Scheme
from speke_packager.media.mp4 import Mp4Encryptor
from speke_packager.media.mp4.init import parse_init
from speke_packager.model import ContentKey, TrackKind
from tests.mp4.conftest import Asset
from tests.mp4.helpers import (
    KEY,
    KEY2,
    KID,
    KID2,
    WRONG,
    frames,
    senc_samples,
    shaka,
    shaka_decrypt,
)

pytestmark = pytest.mark.interop

# (asset, [(ffmpeg stream, shaka stream name)])
CODECS = {
    "h264-aac-fmp4": [("v:0", "video"), ("a:0", "audio")],
    "hevc-fmp4": [("v:0", "video")],
    "vp9-opus-fmp4": [("v:0", "video"), ("a:0", "audio")],
    "ac3-fmp4-dm": [("a:0", "audio")],
    "eac3-fmp4-dm": [("a:0", "audio")],
    "aac-fmp4": [("a:0", "audio")],
    "h264-cavlc-interlaced-fmp4": [("v:0", "video")],
    "h264-slices-fmp4": [("v:0", "video")],
    "hevc-hev1-fmp4": [("v:0", "video")],
    "hevc-slices-fmp4": [("v:0", "video")],
}
IV16 = bytes.fromhex("00112233445566778899aabbccddeeff")


KEYS = {KID: KEY, KID2: KEY2}


def encrypt_all(a: Asset, scheme: Scheme, **kw: object) -> bytes:
    """Video with KID/KEY, audio with KID2/KEY2 (Shaka Packager's decryptor reuses one pattern
    per KID, so audio and video sharing a key cannot be checked with it under cbcs)."""
    tracks = parse_init(a.init).tracks.values()
    keys = {t.track_id: ContentKey(KID, KEY) if t.kind is TrackKind.VIDEO
            else ContentKey(KID2, KEY2) for t in tracks}
    enc = Mp4Encryptor(a.init, scheme, keys, iv_seed=b"interop", **kw)  # type: ignore[arg-type]
    return enc.encrypted_init() + b"".join(
        enc.encrypt_segment(s, segment_index=i) for i, s in enumerate(a.segments))


@pytest.mark.parametrize("scheme", [Scheme.CENC, Scheme.CBCS], ids=lambda s: s.value)
@pytest.mark.parametrize("name", list(CODECS))
def test_ffmpeg_and_shaka_decrypt(name: str, scheme: Scheme, asset: Callable[[str], Asset],
                                  tmp_path: Path) -> None:
    a = asset(name)
    out = tmp_path / "enc.mp4"
    out.write_bytes(encrypt_all(a, scheme))
    for stream, shaka_stream in CODECS[name]:
        ref = frames(a.path, stream)
        assert len(ref) > 50
        # FFmpeg 8 decrypts the concatenated init + segments
        assert frames(out, stream, keys=KEYS) == ref
        # negative control: a wrong key decodes to garbage (or not at all)
        bad = frames(out, stream, keys={KID: WRONG, KID2: WRONG})
        assert sum(x == y for x, y in zip(ref, bad, strict=False)) < len(ref) // 10
        # Shaka Packager raw-key decryption, then frame hashes of its clear output
        dec = tmp_path / f"shaka-{shaka_stream}.mp4"
        shaka_decrypt(out, dec, shaka_stream, KEYS)
        assert frames(dec, "v:0" if shaka_stream == "video" else "a:0") == ref
        # encrypted output itself must not decode like the clear source
        assert frames(out, stream) != ref


@pytest.mark.parametrize("name", ["h264-fmp4", "hevc-fmp4", "h264-slices-fmp4",
                                  "h264-cavlc-interlaced-fmp4", "hevc-slices-fmp4",
                                  "hevc-hev1-fmp4"])
def test_cbcs_bytes_equal_shaka(name: str, asset: Callable[[str], Asset], tmp_path: Path
                                ) -> None:
    """cbcs with a constant IV fixes every byte: samples and subsample maps equal Shaka's."""
    a = asset(name)
    theirs = tmp_path / "shaka.mp4"
    shaka(f"in={a.path},stream=video,output={theirs}", "--enable_raw_key_encryption",
          packager_key_flags(f"--keys=label=:key_id={KID.hex}:key={KEY.hex()}"), "--iv", IV16.hex(),
          "--protection_scheme", "cbcs", "--clear_lead", "0")
    ours = encrypt_all(a, Scheme.CBCS, constant_iv=IV16)
    mine = senc_samples(ours, 1, 0)
    ref = senc_samples(theirs.read_bytes(), 1, 0)
    assert len(mine) == len(ref) > 100
    assert [s.subsamples for s in mine] == [s.subsamples for s in ref]
    assert [s.data for s in mine] == [s.data for s in ref]
    # and the maps really keep slice headers clear: more than NAL length + header
    assert any(s.subsamples and s.subsamples[-1][0] > 6 for s in mine)


@pytest.mark.parametrize("scheme", [Scheme.CENC, Scheme.CBCS], ids=lambda s: s.value)
def test_vp9_headers_match_shaka(scheme: Scheme, asset: Callable[[str], Asset],
                                 tmp_path: Path) -> None:
    """VP9: the same uncompressed header and protected size as Shaka Packager per frame.

    Shaka 3.8 leaves the 16-byte alignment leftover clear *after* the protected range; we move it
    to the leading clear part (media-encryption.md §7), so our leading clear count equals
    Shaka's leading plus trailing clear count."""
    a = asset("vp9-opus-fmp4")
    theirs = tmp_path / "shaka.mp4"
    shaka(f"in={a.path},stream=video,output={theirs}", "--enable_raw_key_encryption",
          packager_key_flags(f"--keys=label=:key_id={KID.hex}:key={KEY.hex()}"),
          "--iv", IV16.hex()[:16],
          "--protection_scheme", scheme.value, "--clear_lead", "0")
    iv_size = 8 if scheme is Scheme.CENC else 0
    mine = senc_samples(encrypt_all(a, scheme), 1, iv_size)
    ref = senc_samples(theirs.read_bytes(), 1, iv_size)
    assert len(mine) == len(ref) > 100
    for m, r in zip(mine, ref, strict=True):
        assert m.subsamples is not None and r.subsamples is not None
        assert [p for _, p in m.subsamples if p] == [p for _, p in r.subsamples if p]
        assert sum(c for c, _ in m.subsamples) == sum(c for c, _ in r.subsamples)
        assert all(p % 16 == 0 for _, p in m.subsamples)


@pytest.mark.parametrize("scheme", [Scheme.CENC, Scheme.CBCS], ids=lambda s: s.value)
def test_h264_cenc_map_rules(scheme: Scheme, asset: Callable[[str], Asset]) -> None:
    """cenc: protected ranges 16-aligned and ending at NAL ends; cbcs: slice headers clear."""
    a = asset("h264-fmp4")
    samples = senc_samples(encrypt_all(a, scheme), 1, 8 if scheme is Scheme.CENC else 0)
    for s in samples:
        assert s.subsamples is not None
        assert sum(c + p for c, p in s.subsamples) == len(s.data)
        if scheme is Scheme.CENC:
            assert all(p % 16 == 0 for _, p in s.subsamples)
        # every protected range ends exactly at a NAL unit end
        ends = set()
        pos = 0
        while pos < len(s.data):
            n = int.from_bytes(s.data[pos:pos + 4], "big")
            pos += 4 + n
            ends.add(pos)
        pos = 0
        for c, p in s.subsamples:
            pos += c + p
            if p:
                assert pos in ends


def test_cenc_16_byte_ivs(asset: Callable[[str], Asset], tmp_path: Path) -> None:
    a = asset("h264-aac-fmp4")
    out = tmp_path / "enc16.mp4"
    out.write_bytes(encrypt_all(a, Scheme.CENC, iv_size=16))
    samples = senc_samples(out.read_bytes(), 1, 16)
    assert all(len(s.iv) == 16 for s in samples)
    assert len({s.iv for s in samples}) == len(samples)
    for stream in ("v:0", "a:0"):
        assert frames(out, stream, keys=KEYS) == frames(a.path, stream)


@pytest.mark.parametrize("scheme", [Scheme.CENC, Scheme.CBCS], ids=lambda s: s.value)
@pytest.mark.parametrize("name", ["h264-aac-fmp4", "hevc-fmp4", "vp9-opus-fmp4"])
def test_our_decryptor_reads_shaka_output(name: str, scheme: Scheme,
                                          asset: Callable[[str], Asset], tmp_path: Path) -> None:
    """Our round-trip decryptor also reads another packager's cenc/cbcs (16-byte IVs)."""
    from speke_packager.media.mp4 import Mp4Decryptor
    from tests.mp4.helpers import split

    a = asset(name)
    stream = "video" if name != "aac-fmp4" else "audio"
    theirs = tmp_path / "shaka.mp4"
    shaka(f"in={a.path},stream={stream},output={theirs}", "--enable_raw_key_encryption",
          packager_key_flags(f"--keys=label=:key_id={KID.hex}:key={KEY.hex()}"), "--iv", IV16.hex(),
          "--protection_scheme", scheme.value, "--clear_lead", "0", "--segment_duration", "2")
    init, segs = split(theirs.read_bytes())
    assert len(segs) >= 3
    dec = Mp4Decryptor(init, {KID: KEY})
    out = tmp_path / "dec.mp4"
    out.write_bytes(dec.clear_init() + b"".join(dec.decrypt_segment(s) for s in segs))
    assert frames(out, "v:0") == frames(a.path, "v:0")
    wrong = Mp4Decryptor(init, {KID: WRONG})
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(wrong.clear_init() + b"".join(wrong.decrypt_segment(s) for s in segs))
    assert frames(bad, "v:0") != frames(a.path, "v:0")


@pytest.mark.parametrize(("name", "track"), [("aac-fmp4", 1), ("ac3-fmp4-dm", 1),
                                             ("eac3-fmp4-dm", 1), ("vp9-opus-fmp4", 2),
                                             ("h264-aac-fmp4", 2)])
def test_cbcs_audio_bytes_equal_shaka(name: str, track: int, asset: Callable[[str], Asset],
                                      tmp_path: Path) -> None:
    """cbcs audio (0:0, whole blocks from the constant IV, no subsamples) equals Shaka's."""
    a = asset(name)
    theirs = tmp_path / "shaka.mp4"
    shaka(f"in={a.path},stream=audio,output={theirs}", "--enable_raw_key_encryption",
          packager_key_flags(f"--keys=label=:key_id={KID.hex}:key={KEY.hex()}"), "--iv", IV16.hex(),
          "--protection_scheme", "cbcs", "--clear_lead", "0")
    enc = Mp4Encryptor(a.init, Scheme.CBCS, {track: ContentKey(KID, KEY)}, constant_iv=IV16)
    ours = enc.encrypted_init() + b"".join(
        enc.encrypt_segment(s, segment_index=i) for i, s in enumerate(a.segments))
    mine = senc_samples(ours, track, 0)
    ref = senc_samples(theirs.read_bytes(), 1, 0)
    assert len(mine) == len(ref) > 100
    assert all(s.subsamples is None for s in mine + ref)
    assert [s.data for s in mine] == [s.data for s in ref]
    clear = senc_samples(a.init + b"".join(a.segments), track, 0)
    assert all(m.data != c.data for m, c in zip(mine, clear, strict=True) if len(c.data) >= 16)
