"""CPIX document values: what we request, and what a parsed document holds.

Parsed values keep the text exactly as found (base64 still encoded, KIDs as written) so that
validation can name what is wrong; decoding happens in :mod:`speke_packager.keys.validate`
and :mod:`speke_packager.keys.drm_signals`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from uuid import UUID

from ...constants import DrmSystem
from ...model import AudioFilter, KeyPeriod, VideoFilter

__all__ = [
    "CpixContentKey",
    "CpixDeliveryData",
    "CpixDocument",
    "CpixDrmSystem",
    "CpixPeriod",
    "CpixUsageRule",
    "EncryptedSecret",
    "Placeholder",
    "RequestedKey",
    "SignalElement",
]


class Placeholder(enum.Enum):
    """A DRMSystem child the encryptor asks the key server to fill (speke.md §3.4)."""

    PSSH = "PSSH"
    CONTENT_PROTECTION_DATA = "ContentProtectionData"
    URI_EXT_X_KEY = "URIExtXKey"
    HLS_MEDIA = "HLSSignalingData:media"
    HLS_MASTER = "HLSSignalingData:master"
    SMOOTH_STREAMING = "SmoothStreamingProtectionHeaderData"
    SPEKE_PROTECTION_HEADER = "speke:ProtectionHeader"
    SPEKE_KEY_FORMAT = "speke:KeyFormat"
    SPEKE_KEY_FORMAT_VERSIONS = "speke:KeyFormatVersions"

    @property
    def is_speke(self) -> bool:
        return self.value.startswith("speke:")

    @property
    def local_name(self) -> str:
        return self.value.split(":")[-1] if self.is_speke else self.value.split(":")[0]


# Schema order of DRMSystem children (CPIX 2.3), then the speke: extensions.
PLACEHOLDER_ORDER: tuple[Placeholder, ...] = tuple(Placeholder)


@dataclass(frozen=True, slots=True)
class RequestedKey:
    """One key of a request: its KID, role in the contract and optional explicit IV."""

    kid: UUID
    track_type: str
    period: KeyPeriod | None = None
    video_filters: tuple[VideoFilter, ...] = ()
    audio_filters: tuple[AudioFilter, ...] = ()
    explicit_iv: bytes | None = field(default=None, repr=False)


# ---- parsed documents ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncryptedSecret:
    """A ``pskc:EncryptedValue`` (or layout-A ``cpix:Key``): algorithm and base64 texts."""

    algorithm: str | None
    cipher_value: str
    value_mac: str | None = None


@dataclass(frozen=True, slots=True)
class CpixDeliveryData:
    """One recipient of encrypted content keys."""

    id: str | None
    certificate_b64: str | None
    document_key_algorithm: str | None = None
    document_key: EncryptedSecret | None = None
    mac_algorithm: str | None = None
    mac_key: EncryptedSecret | None = None
    has_mac_method: bool = False


@dataclass(frozen=True, slots=True)
class CpixContentKey:
    kid: str
    common_encryption_scheme: str | None = None
    explicit_iv: str | None = None
    secret_count: int = 0  # number of Data/pskc:Secret elements
    plain_value: str | None = None
    encrypted: EncryptedSecret | None = None
    value_count: int = 0  # PlainValue + EncryptedValue inside the secret


@dataclass(frozen=True, slots=True)
class SignalElement:
    """One child of a DRMSystem: its placeholder kind (None: unknown), raw text, attributes."""

    namespace: str
    name: str
    text: str
    playlist: str | None = None
    placeholder: Placeholder | None = None


@dataclass(frozen=True, slots=True)
class CpixDrmSystem:
    kid: str
    system_id: str
    elements: tuple[SignalElement, ...] = ()

    @property
    def drm(self) -> DrmSystem | None:
        try:
            return DrmSystem.from_name(self.system_id)
        except ValueError:
            return None

    def find(self, placeholder: Placeholder) -> list[SignalElement]:
        return [e for e in self.elements if e.placeholder is placeholder]


@dataclass(frozen=True, slots=True)
class CpixPeriod:
    id: str | None
    index: int | None
    start: str | None = None
    end: str | None = None
    start_offset: str | None = None
    end_offset: str | None = None


@dataclass(frozen=True, slots=True)
class CpixUsageRule:
    kid: str
    intended_track_type: str | None
    period_ids: tuple[str, ...] = ()
    video_filters: tuple[VideoFilter, ...] = ()
    audio_filters: tuple[AudioFilter, ...] = ()


@dataclass(frozen=True, slots=True)
class CpixDocument:
    """A parsed CPIX document (any version, request or response)."""

    id: str | None
    content_id: str | None
    version: str | None
    delivery_data: tuple[CpixDeliveryData, ...] = ()
    content_keys: tuple[CpixContentKey, ...] = ()
    drm_systems: tuple[CpixDrmSystem, ...] = ()
    periods: tuple[CpixPeriod, ...] = ()
    usage_rules: tuple[CpixUsageRule, ...] = ()
    list_counts: dict[str, int] = field(default_factory=dict)  # e.g. {"ContentKeyList": 1}
    has_delivery_data_list: bool = False

    def drm_for(self, kid: str) -> list[CpixDrmSystem]:
        k = kid.lower()
        return [d for d in self.drm_systems if d.kid.lower() == k]

    def rule_for(self, kid: str) -> list[CpixUsageRule]:
        k = kid.lower()
        return [r for r in self.usage_rules if r.kid.lower() == k]
