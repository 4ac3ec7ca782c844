"""Encryption contract -> SPEKE request (CPIX document + headers).

KIDs are derived deterministically (UUIDv5 of content id, track type and period index), so a
restart or a retry asks for the same keys (speke.md §3.3).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ..constants import DrmSystem, Packaging, Scheme, SpekeVersion
from ..errors import UsageError
from ..model import KeyPeriod
from .cpix.build import build_request_xml
from .cpix.model import Placeholder, RequestedKey
from .presets import contract_rules

__all__ = [
    "KID_NAMESPACE",
    "EncryptionContract",
    "SpekeRequest",
    "build_request",
    "check_periods_per_request",
    "derive_kid",
    "key_periods",
    "placeholders_for",
    "wants_explicit_iv",
]

KID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:speke-packager:kid")
_CONTENT_ID = re.compile(r"[A-Za-z][A-Za-z0-9._-]*\Z")
_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*\Z")


@dataclass(frozen=True)
class EncryptionContract:
    """What to ask the key server for: one content id, DRM systems, outputs and presets."""

    content_id: str
    drm: tuple[DrmSystem, ...]
    packaging: tuple[Packaging, ...] = (Packaging.DASH,)
    scheme: Scheme = Scheme.CBCS
    version: SpekeVersion = SpekeVersion.V2_0
    video_preset: str = "PRESET-VIDEO-1"
    audio_preset: str = "PRESET-AUDIO-1"
    period: KeyPeriod | None = None  # key rotation: the key period of this request
    delivery_cert_der: bytes | None = field(default=None, repr=False)  # ask for encrypted keys
    # send a random explicitIV per key: True / False, or None = only where the IV is used
    # (FairPlay, AES-128 key delivery, HLS AES-128 / SAMPLE-AES): see wants_explicit_iv()
    explicit_iv: bool | None = None
    # key rotation, several periods in one request (SPEKE v1 only; see
    # check_periods_per_request): one key per period; exclusive with ``period``
    periods: tuple[KeyPeriod, ...] = ()

    @property
    def key_periods(self) -> tuple[KeyPeriod, ...]:
        """The key periods asked for (empty: no rotation)."""
        return self.periods or ((self.period,) if self.period is not None else ())


@dataclass(frozen=True)
class SpekeRequest:
    """A ready-to-send SPEKE request and everything needed to validate its answer."""

    contract: EncryptionContract
    body: bytes
    headers: Mapping[str, str]
    keys: tuple[RequestedKey, ...]
    placeholders: Mapping[DrmSystem, tuple[Placeholder, ...]]
    delivery_data_id: str | None = None

    @property
    def kids(self) -> tuple[uuid.UUID, ...]:
        return tuple(k.kid for k in self.keys)

    @property
    def version(self) -> SpekeVersion:
        return self.contract.version

    @property
    def content_id(self) -> str:
        return self.contract.content_id


def derive_kid(content_id: str, track_type: str, period_index: int | None) -> uuid.UUID:
    """UUIDv5 of (content id, track type, period index): stable across restarts and retries."""
    p = "-" if period_index is None else str(period_index)
    return uuid.uuid5(KID_NAMESPACE, f"{content_id}\x1f{track_type}\x1f{p}")


MAX_KEY_PERIODS = 1000  # periods in one key_periods() run
MAX_PERIODS_PER_REQUEST = 64  # key periods in one SPEKE v1 request


def check_periods_per_request(version: SpekeVersion, n: int) -> None:
    """``n`` key periods per request must fit ``version``: SPEKE v2.0/v2.1 carry one (every
    ``intendedTrackType`` is unique in a document, so a second period's keys cannot be
    told apart); SPEKE v1 (CPIX 2.0: one key per period, each with its ``KeyPeriodFilter``)
    up to :data:`MAX_PERIODS_PER_REQUEST`."""
    if not 1 <= n <= MAX_PERIODS_PER_REQUEST:
        raise UsageError(f"key periods per request must be between 1 and "
                         f"{MAX_PERIODS_PER_REQUEST}")
    if n > 1 and version.is_v2:
        raise UsageError(f"SPEKE {version.value} sends one key period per request "
                         "(intendedTrackType is unique in a document); several periods per "
                         "request need SPEKE v1")


def key_periods(first: int, count: int) -> list[KeyPeriod]:
    """``count`` consecutive key periods starting at index ``first`` (one request each with
    :meth:`~.client.SpekeClient.fetch_periods`)."""
    if first < 0 or not 1 <= count <= MAX_KEY_PERIODS:
        raise UsageError(f"--key-periods needs FIRST >= 0 and 1 <= COUNT <= {MAX_KEY_PERIODS}")
    return [KeyPeriod(index=i) for i in range(first, first + count)]


_PSSH_DRMS = (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.CLEARKEY)
_HLS_ONLY_DRMS = (DrmSystem.FAIRPLAY, DrmSystem.AES128)


def placeholders_for(
    drm: DrmSystem, packaging: tuple[Packaging, ...], version: SpekeVersion
) -> tuple[Placeholder, ...]:
    """Exactly the signaling elements ``drm`` needs for ``packaging`` (speke.md §3.4).

    With several outputs a DRM serves those it fits (FairPlay: HLS only); a DRM that fits none
    is a :class:`UsageError`."""
    want: set[Placeholder] = set()
    for pkg in packaging:
        if pkg is Packaging.DASH:
            if drm in _HLS_ONLY_DRMS:
                continue
            want.add(Placeholder.PSSH)
            if version.is_v2:
                want.add(Placeholder.CONTENT_PROTECTION_DATA)
            elif drm is DrmSystem.PLAYREADY:
                want.add(Placeholder.SPEKE_PROTECTION_HEADER)
        elif pkg is Packaging.HLS_FMP4 or pkg is Packaging.HLS_TS:
            if pkg is Packaging.HLS_TS and drm in _PSSH_DRMS:
                continue
            if drm in _PSSH_DRMS:
                want.add(Placeholder.PSSH)
            if version.is_v2:
                want |= {Placeholder.HLS_MEDIA, Placeholder.HLS_MASTER}
            elif drm in _HLS_ONLY_DRMS:
                want |= {
                    Placeholder.URI_EXT_X_KEY,
                    Placeholder.SPEKE_KEY_FORMAT,
                    Placeholder.SPEKE_KEY_FORMAT_VERSIONS,
                }
    if not want:
        names = ", ".join(p.value for p in packaging)
        raise UsageError(f"{drm.label} cannot be used with the requested output ({names})")
    order = list(Placeholder)
    return tuple(sorted(want, key=order.index))


def wants_explicit_iv(contract: EncryptionContract) -> bool:
    """Whether the request carries our own random ``explicitIV`` per key.

    ``contract.explicit_iv`` decides when set; by default (None) we send one wherever the IV
    reaches the player through the key server or the playlist: FairPlay (its key server hands the
    IV to the device), AES-128 key delivery and HLS AES-128 / SAMPLE-AES packaging. This is what
    MediaPackage does, and it stops servers that invent an IV (AWS's reference server returns the
    content key in its place) from breaking FairPlay."""
    if contract.explicit_iv is not None:
        return contract.explicit_iv
    return (DrmSystem.FAIRPLAY in contract.drm or DrmSystem.AES128 in contract.drm
            or contract.scheme in (Scheme.AES_128, Scheme.SAMPLE_AES)
            or Packaging.HLS_TS in contract.packaging)


def _check_contract(c: EncryptionContract) -> None:
    if not _CONTENT_ID.match(c.content_id):
        raise UsageError(
            f"content id {c.content_id!r} must start with a letter and use only "
            "letters, digits, '.', '_' and '-'"
        )
    if not c.drm:
        raise UsageError("at least one DRM system is required")
    if len(set(c.drm)) != len(c.drm):
        raise UsageError("a DRM system is listed twice")
    if not c.packaging:
        raise UsageError("at least one packaging is required")
    for d in c.drm:
        if d is DrmSystem.FAIRPLAY and c.scheme not in (Scheme.CBCS, Scheme.SAMPLE_AES):
            raise UsageError(f"FairPlay needs the cbcs or sample-aes scheme, not {c.scheme.value}")
        if d is DrmSystem.AES128 and c.scheme is Scheme.CENC:
            raise UsageError("aes-128 key delivery cannot be used with the cenc scheme")
        if d in _PSSH_DRMS and c.scheme is Scheme.AES_128:
            raise UsageError(f"{d.label} cannot be used with the aes-128 scheme")
    if Packaging.DASH in c.packaging and c.scheme not in (Scheme.CENC, Scheme.CBCS):
        raise UsageError(f"DASH output needs the cenc or cbcs scheme, not {c.scheme.value}")
    if Packaging.HLS_TS in c.packaging and c.scheme in (Scheme.CENC,):
        raise UsageError("HLS MPEG-TS output cannot use the cenc scheme")
    if c.period is not None and c.periods:
        raise UsageError("give one key period (period) or several (periods), not both")
    if c.periods:
        check_periods_per_request(c.version, len(c.periods))
        if len({p.index for p in c.periods}) != len(c.periods) or \
                len({p.period_id for p in c.periods}) != len(c.periods):
            raise UsageError("a key period is listed twice")
    for p in c.key_periods:
        if p.index < 0:
            raise UsageError("key period index must not be negative")
        if not _NCNAME.match(p.period_id):
            raise UsageError(f"key period id {p.period_id!r} is not a valid XML name")
        if (p.start or p.end) and c.version is not SpekeVersion.V2_1:
            raise UsageError("key period start/end times need SPEKE v2.1")
    if c.delivery_cert_der is not None and not c.delivery_cert_der:
        raise UsageError("the delivery certificate is empty")


def build_request(
    contract: EncryptionContract, *, iv_source: Callable[[int], bytes] = os.urandom
) -> SpekeRequest:
    """Build the CPIX request document and headers for ``contract``.

    Raises :class:`~speke_packager.errors.UsageError` for contracts that cannot work."""
    _check_contract(contract)
    v = contract.version
    period = contract.period
    pidx = period.index if period else None
    if contract.periods:  # SPEKE v1 only (checked above): one key per period
        keys = [RequestedKey(derive_kid(contract.content_id, "ALL", p.index), "ALL", p)
                for p in contract.periods]
    elif v.is_v2:
        templates = contract_rules(contract.video_preset, contract.audio_preset)
        keys = [
            RequestedKey(
                kid=derive_kid(contract.content_id, t.track_type, pidx),
                track_type=t.track_type,
                period=period,
                video_filters=t.video_filters,
                audio_filters=t.audio_filters,
            )
            for t in templates
        ]
    else:
        keys = [RequestedKey(derive_kid(contract.content_id, "ALL", pidx), "ALL", period)]
    if wants_explicit_iv(contract):
        keys = [replace(k, explicit_iv=iv_source(16)) for k in keys]
        for k in keys:
            if k.explicit_iv is None or len(k.explicit_iv) != 16:
                raise UsageError("the IV source must return 16 bytes")
    placeholders = {
        d: placeholders_for(d, contract.packaging, v) for d in contract.drm
    }
    delivery_id = "speke-packager" if contract.delivery_cert_der else None
    body = build_request_xml(
        content_id=contract.content_id,
        version=v,
        scheme=contract.scheme,
        keys=keys,
        placeholders=placeholders,
        delivery_cert_der=contract.delivery_cert_der,
        delivery_data_id=delivery_id,
    )
    headers = {"content-type": "application/xml", "accept": "application/xml"}
    if v.header is not None:
        headers["x-speke-version"] = v.header
    return SpekeRequest(
        contract=contract,
        body=body,
        headers=MappingProxyType(headers),
        keys=tuple(keys),
        placeholders=MappingProxyType(placeholders),
        delivery_data_id=delivery_id,
    )
