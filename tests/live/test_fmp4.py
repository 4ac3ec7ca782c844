"""Live cbcs fMP4 across two key periods (SPEKE v2 Widevine + PlayReady + identity keys from the
local key server): the init carries period 0's KID; period 1's fragments carry their KID and
constant IV in a traf seig group and the period's pssh boxes in the moof. Each period decrypts
with FFmpeg (and Shaka Packager) using that period's key; our decryptor reads the whole stream
with both keys as a second check."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path
from uuid import UUID

import pytest

from fixtures.media import framemd5, packager_key_flags
from speke_packager._tools import PACKAGER, find_tool
from speke_packager.constants import (
    KEYFORMAT_IDENTITY,
    KEYFORMAT_PLAYREADY,
    KEYFORMAT_WIDEVINE,
    PLAYREADY,
    W3C_COMMON,
    WIDEVINE,
    DrmSystem,
    Scheme,
)
from speke_packager.drm.pssh import parse_pssh
from speke_packager.keys import SpekeClient
from speke_packager.keyserver import KeyServer
from speke_packager.media.mp4 import Mp4Decryptor, Mp4Encryptor, probe_init
from speke_packager.media.mp4.boxes import Node, iter_boxes, parse_tree
from speke_packager.model import ContentKey
from speke_packager.pipeline.live import LiveSegment, LiveSession, SpekeKeySource
from speke_packager.pipeline.rotation import RotationSchedule

from .conftest import Rendition
from .helpers import contract, keys_per_segment, run

pytestmark = pytest.mark.interop

CID = "live-cbcs"
DRMS = (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.AES128)


def _moof(data: bytes) -> Node:
    box = next(b for b in iter_boxes(data) if b.type == b"moof")
    return parse_tree(data, box)


def _frames(path: Path, stream: str, key: bytes | None = None) -> list[str]:
    try:
        return framemd5(path, stream, keys=key)
    except RuntimeError:
        return []


@pytest.fixture()
def packaged(ks: KeyServer, live_media: dict[str, Rendition], tmp_path: Path
             ) -> dict[str, list[LiveSegment]]:
    client = SpekeClient(ks.speke_url, retries=0)
    src = SpekeKeySource(client, contract(CID, Scheme.CBCS, DRMS))
    inits = {n: live_media[n].init.read_bytes() for n in ("video", "audio")}  # type: ignore[union-attr]
    out: dict[str, list[LiveSegment]] = {}
    with LiveSession(src, RotationSchedule(interval=6.0), Scheme.CBCS, inits=inits,
                     iv_seed=b"live-cbcs-test") as session:
        for name in ("video", "audio"):
            out[name], pl = run(session, name, live_media[name], tmp_path)
            pl.end()
    return out


@pytest.mark.parametrize("name", ["video", "audio"])
def test_cbcs_two_periods(name: str, packaged: dict[str, list[LiveSegment]], ks: KeyServer,
                          live_media: dict[str, Rendition], tmp_path: Path) -> None:
    r = live_media[name]
    assert r.init is not None
    segs = packaged[name]
    assert [s.period for s in segs] == [0, 0, 0, 1, 1, 1]
    kid0, kid1 = segs[0].kid, segs[3].kid
    assert kid0 != kid1 and {s.kid for s in segs[:3]} == {kid0} and {s.kid for s in segs[3:]} == {kid1}
    key0, key1 = ks.key_for(CID, kid0), ks.key_for(CID, kid1)
    assert key0 != key1
    stream = "v:0" if name == "video" else "a:0"
    # the playlist: the whole KEYFORMAT set before each period's first segment
    text = (tmp_path / f"{name}.m3u8").read_text()
    assert text.count("#EXT-X-KEY:") == 6
    per_seg = keys_per_segment(text)
    ivs = []
    for i, s in enumerate(segs):
        tags = per_seg[f"{name}{i}.m4s"]
        assert set(tags) == {KEYFORMAT_WIDEVINE, KEYFORMAT_PLAYREADY, KEYFORMAT_IDENTITY}
        assert tags[KEYFORMAT_IDENTITY].uri == ks.key_url(s.kid)
        assert tags[KEYFORMAT_WIDEVINE].keyid == s.kid.bytes
        assert all(t.method == "SAMPLE-AES" for t in tags.values())
        ivs.append(tags[KEYFORMAT_IDENTITY].iv)
    assert ivs[0] is not None and ivs[3] is not None and ivs[0] != ivs[3]
    # the init: period 0's KID and IV in tenc
    init = (tmp_path / f"{name}_init.mp4").read_bytes()
    assert kid0.bytes in init and kid1.bytes not in init
    # fragments: period 1 names KID1 and its IV in a seig group; every moof carries the period's
    # Widevine, PlayReady and W3C common pssh boxes
    pattern = 0x19 if name == "video" else 0x00
    for s in segs:
        moof = _moof(s.data)
        psshs = [parse_pssh(p.to_bytes()) for p in moof.find_all(b"pssh")]
        assert {p.system_id for p in psshs} == {WIDEVINE, PLAYREADY, W3C_COMMON}
        assert next(p for p in psshs if p.system_id == W3C_COMMON).kids == (s.kid,)
        assert s.kid.bytes in next(p for p in psshs if p.system_id == WIDEVINE).data
        traf = moof.need(b"traf")
        sgpd = traf.find(b"sgpd")
        if s.period == 0:
            assert sgpd is None
            continue
        assert sgpd is not None
        payload = sgpd.to_bytes()[12:]
        assert payload[:4] == b"seig"
        entry = payload[12:]
        assert entry[1] == pattern and entry[2] == 1 and entry[3] == 0
        assert UUID(bytes=bytes(entry[4:20])) == kid1
        assert entry[20] == 16 and bytes(entry[21:37]) == ivs[3]
        sbgp = traf.need(b"sbgp").to_bytes()
        assert struct.unpack_from(">4sII", sbgp, 12)[:2] == (b"seig", 1)
    # each period through FFmpeg with that period's key. FFmpeg 8 decrypts with the tenc KID/IV
    # only (observed), so period 1 is read behind an init whose default is KID1 and IV1
    clear_init = r.init.read_bytes()
    track = probe_init(clear_init)[0].track_id
    alt = {0: init,
           1: Mp4Encryptor(clear_init, Scheme.CBCS,
                           {track: ContentKey(kid1, key1, iv=ivs[3])}).encrypted_init()}
    for p, key, wrong in ((0, key0, key1), (1, key1, key0)):
        clear_f = tmp_path / f"clear-{name}-{p}.mp4"
        clear_f.write_bytes(clear_init + b"".join(r.data(i) for i in range(3 * p, 3 * p + 3)))
        enc_f = tmp_path / f"enc-{name}-{p}.mp4"
        enc_f.write_bytes(alt[p] + b"".join(s.data for s in segs[3 * p:3 * p + 3]))
        ref = _frames(clear_f, stream)
        assert len(ref) > 50
        assert _frames(enc_f, stream, key) == ref
        assert _frames(enc_f, stream, wrong) != ref
        assert _frames(enc_f, stream) != ref
    # period 0 as packaged (our init) through Shaka Packager's raw-key decryption
    packager = find_tool("packager", PACKAGER)
    assert packager is not None
    src = tmp_path / f"enc-{name}-0.mp4"
    dec = tmp_path / f"shaka-{name}-0.mp4"
    kind = "video" if name == "video" else "audio"
    res = subprocess.run([packager, f"in={src},stream={kind},output={dec}",
                          "--enable_raw_key_decryption",
                          packager_key_flags(f"--keys=label=a:key_id={kid0.hex}:key={key0.hex()}")],
                         capture_output=True, check=False)
    assert res.returncode == 0, res.stderr[-1500:]
    assert _frames(dec, stream) == _frames(tmp_path / f"clear-{name}-0.mp4", stream)
    # second check, whole stream: our decryptor with both keys gives the clear segments back
    dec_all = Mp4Decryptor(init, {kid0: key0, kid1: key1})
    assert [dec_all.decrypt_segment(s.data) for s in segs] == [r.data(i) for i in range(6)]


def test_init_default_kid_is_period_of_start_time(ks: KeyServer,
                                                 live_media: dict[str, Rendition]) -> None:
    client = SpekeClient(ks.speke_url, retries=0)
    src = SpekeKeySource(client, contract(CID, Scheme.CBCS, DRMS))
    init = live_media["video"].init.read_bytes()  # type: ignore[union-attr]
    with LiveSession(src, RotationSchedule(interval=6.0, t0=100.0), Scheme.CBCS,
                     inits={"v": init}) as session:
        out = session.encrypt_init("v", start_time=107.0)
        kid1 = next(e.kid for e in session.keys_for(1).entries if e.track_type == "VIDEO")
        kid0 = next(e.kid for e in session.keys_for(0).entries if e.track_type == "VIDEO")
    assert kid1.bytes in out and kid0.bytes not in out


def test_cenc_two_periods(ks: KeyServer, live_media: dict[str, Rendition],
                          tmp_path: Path) -> None:
    """cenc: SAMPLE-AES-CTR tags without IV, a per-sample IV seig group (8-byte IVs) for period
    1, each period decrypted by FFmpeg with its own key (behind an init naming its KID)."""
    r = live_media["video"]
    assert r.init is not None
    client = SpekeClient(ks.speke_url, retries=0)
    src = SpekeKeySource(client, contract("live-cenc", Scheme.CENC, DRMS[:2]))
    clear_init = r.init.read_bytes()
    with LiveSession(src, RotationSchedule(interval=6.0), Scheme.CENC,
                     inits={"video": clear_init}) as session:
        segs, _pl = run(session, "video", r, tmp_path)
    text = (tmp_path / "video.m3u8").read_text()
    tags = keys_per_segment(text)
    assert all(t.method == "SAMPLE-AES-CTR" and t.iv is None
               for seg in tags.values() for t in seg.values())
    kid0, kid1 = segs[0].kid, segs[3].kid
    assert kid0 != kid1 and [s.period for s in segs] == [0, 0, 0, 1, 1, 1]
    entry = _moof(segs[3].data).need(b"traf").need(b"sgpd").to_bytes()[24:]
    assert entry[2] == 1 and entry[3] == 8 and UUID(bytes=bytes(entry[4:20])) == kid1
    track = probe_init(clear_init)[0].track_id
    key0, key1 = ks.key_for("live-cenc", kid0), ks.key_for("live-cenc", kid1)
    heads = {0: (tmp_path / "video_init.mp4").read_bytes(),
             1: Mp4Encryptor(clear_init, Scheme.CENC,
                             {track: ContentKey(kid1, key1)}).encrypted_init()}
    for p, key, wrong in ((0, key0, key1), (1, key1, key0)):
        clear_f = tmp_path / f"clear{p}.mp4"
        clear_f.write_bytes(clear_init + b"".join(r.data(i) for i in range(3 * p, 3 * p + 3)))
        enc_f = tmp_path / f"enc{p}.mp4"
        enc_f.write_bytes(heads[p] + b"".join(s.data for s in segs[3 * p:3 * p + 3]))
        ref = _frames(clear_f, "v:0")
        assert len(ref) == 150
        assert _frames(enc_f, "v:0", key) == ref
        assert _frames(enc_f, "v:0", wrong) != ref
