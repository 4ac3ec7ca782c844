"""pipeline.protection, table-driven: which DRM systems a scheme and format may signal, and per
rendition the IV (key server's, else the caller's fallback), IV size, pssh boxes and HLS DRMs,
over scheme x container x key source x IV source. Expected values are written out here, not
taken from the module."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable
from uuid import UUID

import pytest

from speke_packager.constants import PLAYREADY, W3C_COMMON, WIDEVINE, DrmSystem, Scheme
from speke_packager.drm.pssh import build_pssh, parse_pssh
from speke_packager.errors import UsageError
from speke_packager.model import ContentKey, DrmSignal, KeyEntry, KeySet
from speke_packager.pipeline.contexts import KeyChoice
from speke_packager.pipeline.options import OutputFormat
from speke_packager.pipeline.protection import (
    check_drms,
    hls_drms,
    live_iv,
    protect,
    rendition_iv,
)

WV, PR, FP, CK, AES = (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.FAIRPLAY,
                       DrmSystem.CLEARKEY, DrmSystem.AES128)
KID = UUID("0123456789abcdef0123456789abcdef")
KEY = bytes(range(16))
EXPLICIT = b"\xee" * 16
SEED = b"0123456789abcdef"
HLS, DASH, BOTH = OutputFormat.HLS, OutputFormat.DASH, OutputFormat.BOTH

# --- allowed DRM systems -------------------------------------------------------------------
ALLOWED_HLS = {
    Scheme.CBCS: {WV, PR, FP, CK, AES},
    Scheme.CENC: {WV, PR, CK, AES},
    Scheme.AES_128: {AES},
    Scheme.SAMPLE_AES: {FP, AES},
}
ALLOWED_DASH = {WV, PR, CK}


@pytest.mark.parametrize(("scheme", "fmt", "drm"), list(itertools.product(
    Scheme, OutputFormat, DrmSystem)))
def test_allowed_drm_systems(scheme: Scheme, fmt: OutputFormat, drm: DrmSystem) -> None:
    allowed = (fmt is not DASH and drm in ALLOWED_HLS[scheme]) or \
              (fmt is not HLS and drm in ALLOWED_DASH)
    if allowed:
        check_drms([drm], fmt, scheme)
        return
    where = {HLS: "HLS", DASH: "DASH", BOTH: "HLS or DASH"}[fmt]
    with pytest.raises(UsageError) as ei:
        check_drms([drm], fmt, scheme)
    assert str(ei.value).startswith(f"--drm {drm.label} cannot be signalled in {where} with "
                                     f"{scheme.value}")
    assert ("FairPlay uses cbcs or SAMPLE-AES" in str(ei.value)) is (drm is FP)


@pytest.mark.parametrize("scheme", list(Scheme))
def test_hls_drms_limited_by_the_caller(scheme: Scheme) -> None:
    assert hls_drms(scheme) == ALLOWED_HLS[scheme]
    assert hls_drms(scheme, [WV, FP]) == ALLOWED_HLS[scheme] & {WV, FP}
    assert hls_drms(scheme, []) == frozenset()


# --- per rendition -------------------------------------------------------------------------
WV_BOX = build_pssh(WIDEVINE, b"\x12\x10" + KID.bytes, version=0)
PR_BOX = build_pssh(PLAYREADY, b"pro", version=0)
CK_BOX = build_pssh(W3C_COMMON, b"ck", kids=[KID], version=1)  # told apart by its data


def _entry(iv: bytes | None, clearkey_pssh: bool) -> KeyEntry:
    signals = [DrmSignal(WV, WV.system_id, pssh=WV_BOX), DrmSignal(PR, PR.system_id, pssh=PR_BOX),
               DrmSignal(FP, FP.system_id),
               DrmSignal(CK, CK.system_id, pssh=CK_BOX if clearkey_pssh else None)]
    return KeyEntry(key=ContentKey(KID, KEY, iv=iv), drm=tuple(signals))


def _det() -> Callable[[int], bytes]:
    counter = itertools.count()
    return lambda n: hashlib.sha256(b"t" + str(next(counter)).encode()).digest()[:n]


KEY_SOURCES = {  # the key server's IV on the ContentKey -> the IV expected from it
    "server-16": (b"\x11" * 16, b"\x11" * 16),
    "server-8": (b"\x22" * 8, b"\x22" * 8 + bytes(8)),
    "none": (None, None),
}
IV_SOURCES = {  # the caller's fallback -> the IV it must give
    "vod-explicit": EXPLICIT,
    "vod-random": hashlib.sha256(b"t0").digest()[:16],
    "live-seed": hashlib.sha256(b"speke-packager/live-iv" + SEED + KID.bytes).digest()[:16],
}
CASES = [  # scheme, fMP4?, expected per-sample IV size, pssh in the init/moof?
    (Scheme.CENC, True, 8, True),
    (Scheme.CBCS, True, 0, True),
    (Scheme.AES_128, True, 0, False),
    (Scheme.AES_128, False, 0, False),
    (Scheme.SAMPLE_AES, False, 0, False),
]


def _fallback(name: str) -> Callable[[ContentKey], bytes]:
    if name == "live-seed":
        return lambda key: rendition_iv(key, lambda: live_iv(SEED, key))
    source = _det()
    explicit = EXPLICIT if name == "vod-explicit" else None
    choice = KeyChoice(keyset=KeySet("c", Scheme.CBCS, ()), scheme=Scheme.CBCS,
                       explicit_iv=explicit, iv_source=source)
    return choice.iv


@pytest.mark.parametrize(("scheme", "fmp4", "iv_size", "has_pssh"), CASES)
@pytest.mark.parametrize("key_source", list(KEY_SOURCES))
@pytest.mark.parametrize("iv_source", list(IV_SOURCES))
@pytest.mark.parametrize("clearkey_pssh", [False, True])
def test_rendition_decisions(scheme: Scheme, fmp4: bool, iv_size: int, has_pssh: bool,
                             key_source: str, iv_source: str, clearkey_pssh: bool) -> None:
    server_iv, from_server = KEY_SOURCES[key_source]
    entry = _entry(server_iv, clearkey_pssh)
    calls: list[ContentKey] = []
    fallback = _fallback(iv_source)

    def iv(key: ContentKey) -> bytes:
        calls.append(key)
        return fallback(key)

    p = protect(entry, scheme, fmp4=fmp4, iv=iv, clear_lead=True)
    assert p.key is entry.key and p.clear_lead and p.scheme is scheme
    if scheme is Scheme.CENC:
        assert p.iv is None and not calls  # cenc IVs count per sample: no rendition IV drawn
    else:
        assert p.iv == (from_server or IV_SOURCES[iv_source])
    assert p.iv_size == iv_size
    if not has_pssh:
        assert p.pssh == ()
    else:
        boxes = [parse_pssh(b) for b in p.pssh]
        assert p.pssh[:2] == (WV_BOX, PR_BOX)  # the key server's, in its order
        assert len(boxes) == 3 and boxes[2].system_id == W3C_COMMON
        assert list(boxes[2].kids) == [KID]  # its own ClearKey box, else a W3C common one
        assert (p.pssh[2] == CK_BOX) is clearkey_pssh
    assert p.drms == ALLOWED_HLS[scheme]
    assert "00" * 16 not in repr(p) and KEY.hex() not in repr(p) and "hidden" in repr(p)


def test_rendition_iv_refuses_a_wrong_length_fallback() -> None:
    with pytest.raises(UsageError, match="16 bytes"):
        rendition_iv(ContentKey(KID, KEY), lambda: b"short")
    assert rendition_iv(ContentKey(KID, KEY, iv=b"\x01" * 16), lambda: b"unused") == b"\x01" * 16


def test_vod_key_choice_draws_one_iv_per_kid() -> None:
    choice = KeyChoice(keyset=KeySet("c", Scheme.CBCS, ()), scheme=Scheme.CBCS,
                       explicit_iv=None, iv_source=os.urandom)
    entry = _entry(None, False)
    a = choice.protect(entry, fmp4=True)
    b = choice.protect(entry, fmp4=False)
    assert a.iv == b.iv and a.iv is not None and len(a.iv) == 16
