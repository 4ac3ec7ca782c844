"""How one rendition is protected, decided in one place for VOD (:mod:`.contexts`) and live
(:mod:`.live.session`): which DRM systems a scheme and format can signal, the key, the IV and
IV size, the pssh boxes and the clear lead (media-encryption.md §1, §4, §8).

The IV rule is the same everywhere: the key server's IV (``ContentKey.iv``, set by ``keys``)
wins; otherwise the caller's fallback gives one (VOD: ``--iv``, else random; live: derived
from the session seed and the KID with :func:`live_iv`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..constants import W3C_COMMON, DrmSystem, Scheme
from ..drm.pssh import build_pssh
from ..errors import UsageError
from ..model import ContentKey, KeyEntry
from .options import OutputFormat

__all__ = [
    "DASH_DRMS",
    "HLS_DRMS",
    "Protection",
    "check_drms",
    "hls_drms",
    "live_cenc_seed",
    "live_iv",
    "protect",
    "pssh_boxes",
    "rendition_iv",
]

# DRM systems each scheme can be signalled with in HLS (media-encryption.md §8).
HLS_DRMS: dict[Scheme, frozenset[DrmSystem]] = {
    Scheme.CBCS: frozenset({DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.FAIRPLAY,
                            DrmSystem.CLEARKEY, DrmSystem.AES128}),
    Scheme.CENC: frozenset({DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.CLEARKEY,
                            DrmSystem.AES128}),
    Scheme.AES_128: frozenset({DrmSystem.AES128}),
    Scheme.SAMPLE_AES: frozenset({DrmSystem.FAIRPLAY, DrmSystem.AES128}),
}
# DRM systems a DASH MPD signals (ContentProtection with a pssh), for cenc and cbcs.
DASH_DRMS = frozenset({DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.CLEARKEY})
# DRM systems whose key server pssh boxes go into init segments and moofs.
PSSH_DRMS = (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.CLEARKEY)
# Per-sample IV size in the tenc: 8 bytes for cenc (a 64-bit counter per sample); cbcs uses a
# constant IV (size 0); whole-segment AES-128 and TS SAMPLE-AES have no tenc.
CENC_IV_SIZE = 8


def check_drms(drms: Iterable[DrmSystem], fmt: OutputFormat, scheme: Scheme) -> None:
    """Refuse a DRM system that ``fmt`` cannot signal with ``scheme`` (one-line UsageError)."""
    for d in drms:
        ok_hls = fmt.hls and d in HLS_DRMS[scheme]
        ok_dash = fmt.dash and d in DASH_DRMS
        if not (ok_hls or ok_dash):
            where = {OutputFormat.HLS: "HLS", OutputFormat.DASH: "DASH",
                     OutputFormat.BOTH: "HLS or DASH"}[fmt]
            hint = " (FairPlay uses cbcs or SAMPLE-AES)" if d is DrmSystem.FAIRPLAY else ""
            raise UsageError(f"--drm {d.label} cannot be signalled in {where} with "
                             f"{scheme.value}{hint}")


def hls_drms(scheme: Scheme, only: Sequence[DrmSystem] | None = None) -> frozenset[DrmSystem]:
    """The DRM systems HLS key tags are written for: those ``scheme`` allows, limited to
    ``only`` when given."""
    fits = HLS_DRMS[scheme]
    return fits if only is None else fits & frozenset(only)


def pssh_boxes(entries: Sequence[KeyEntry]) -> list[bytes]:
    """pssh boxes for an init section or moof: the key server's (Widevine, PlayReady,
    ClearKey; each once), else one W3C common box naming every KID."""
    out: list[bytes] = []
    for e in entries:
        for s in e.drm:
            if s.pssh and s.drm in PSSH_DRMS and s.pssh not in out:
                out.append(s.pssh)
    if not any(s.drm is DrmSystem.CLEARKEY and s.pssh for e in entries for s in e.drm):
        kids = sorted({e.kid for e in entries}, key=str)
        if kids:
            out.append(build_pssh(W3C_COMMON, kids=kids))
    return out


def rendition_iv(key: ContentKey, fallback: Callable[[], bytes]) -> bytes:
    """The 16-byte IV for ``key``: the key server's (an 8-byte one zero-padded on the right),
    else ``fallback()``."""
    iv = key.iv.ljust(16, b"\x00") if key.iv is not None else fallback()
    if len(iv) != 16:
        raise UsageError("the IV must be 16 bytes (32 hex digits)")
    return iv


def live_iv(seed: bytes, key: ContentKey) -> bytes:
    """Live's IV fallback: derived from the session seed and the KID (stable per key)."""
    return hashlib.sha256(b"speke-packager/live-iv" + seed + key.kid.bytes).digest()[:16]


def live_cenc_seed(seed: bytes, rendition: str) -> bytes:
    """Live's cenc per-sample IV seed for one rendition."""
    return hashlib.sha256(b"speke-packager/live-seed" + seed + rendition.encode()).digest()[:16]


@dataclass(frozen=True, slots=True)
class Protection:
    """What one rendition is encrypted and signalled with. ``iv``: the AES-128 / SAMPLE-AES
    IV or the cbcs constant IV (None for cenc, whose IVs count per sample); ``iv_size``: the
    tenc per-sample IV size (8 for cenc, 0 otherwise); ``pssh``: boxes for the init section
    and moofs (fMP4 cenc/cbcs only); ``drms``: the DRM systems its HLS tags name;
    ``clear_lead``: the first segments stay clear (the init keeps a clear sample entry)."""

    scheme: Scheme
    entry: KeyEntry
    iv: bytes | None
    iv_size: int
    pssh: tuple[bytes, ...]
    drms: frozenset[DrmSystem]
    clear_lead: bool = False

    @property
    def key(self) -> ContentKey:
        return self.entry.key

    def __repr__(self) -> str:
        return (f"Protection({self.scheme.value}, kid={self.entry.kid}, key=<hidden>, "
                f"iv={'yes' if self.iv else 'no'}, iv_size={self.iv_size}, "
                f"pssh={len(self.pssh)}, drms={sorted(d.label for d in self.drms)})")


def protect(entry: KeyEntry, scheme: Scheme, *, fmp4: bool, iv: Callable[[ContentKey], bytes],
            drms: Sequence[DrmSystem] | None = None, clear_lead: bool = False) -> Protection:
    """The decisions for one rendition encrypted with ``entry``'s key.

    ``fmp4``: the rendition is fMP4 (else MPEG-TS); ``iv(key)``: the caller's IV for a key
    (normally :func:`rendition_iv` with its fallback); it is not called for cenc, which needs
    no rendition IV. ``drms`` limits the DRM systems signalled in HLS."""
    sample_encrypted = fmp4 and scheme in (Scheme.CENC, Scheme.CBCS)
    return Protection(
        scheme=scheme,
        entry=entry,
        iv=None if scheme is Scheme.CENC else iv(entry.key),
        iv_size=CENC_IV_SIZE if sample_encrypted and scheme is Scheme.CENC else 0,
        pssh=tuple(pssh_boxes([entry])) if sample_encrypted else (),
        drms=hls_drms(scheme, drms),
        clear_lead=clear_lead,
    )
