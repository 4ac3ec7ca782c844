"""Identifiers shared by every stage: DRM system IDs, namespaces, KEYFORMATs, schemes, presets.

Sources: DASH-IF system ID registry (https://dashif.org/identifiers/content_protection/),
DASH-IF CPIX 2.3/2.4, AWS SPEKE API v1/v2, RFC 8216, ISO/IEC 23001-7, W3C EME ClearKey.
"""

from __future__ import annotations

import enum
from typing import Final
from uuid import UUID

# --- DRM system IDs (DASH-IF registry) ----------------------------------------------------------
WIDEVINE: Final = UUID("edef8ba9-79d6-4ace-a3c8-27dcd51d21ed")
PLAYREADY: Final = UUID("9a04f079-9840-4286-ab92-e65be0885f95")
FAIRPLAY: Final = UUID("94ce86fb-07ff-4f43-adb8-93d2fa968ca2")
W3C_COMMON: Final = UUID("1077efec-c0b2-4d02-ace3-3c1e52e2fb4b")  # W3C common pssh (ClearKey)
DASHIF_CLEARKEY: Final = UUID("e2719d58-a985-b3c9-781a-b030af78d30e")  # MPD descriptor
CLEARKEY_AES128: Final = UUID("3ea8778f-7742-4bf9-b18b-e834b2acbd47")  # DASH-IF "HLS CBC"
HLS_AES128_UNOFFICIAL: Final = UUID("81376844-f976-481e-a84e-cc25d39b0b33")  # SPEKE v1 docs
CLEARKEY_SAMPLE_AES: Final = UUID("be58615b-19c4-4684-88b3-c8c57e99e957")  # DASH-IF "HLS CBCS"


class DrmSystem(enum.Enum):
    """DRM systems the packager can request and signal, valued by their SPEKE systemId."""

    WIDEVINE = WIDEVINE
    PLAYREADY = PLAYREADY
    FAIRPLAY = FAIRPLAY
    CLEARKEY = W3C_COMMON
    AES128 = CLEARKEY_AES128

    @property
    def system_id(self) -> UUID:
        return self.value

    @classmethod
    def from_name(cls, name: str) -> DrmSystem:
        """Parse a DRM name (``widevine``, ``playready``, ``fairplay``, ``clearkey``, ``aes-128``)
        or a system ID."""
        key = name.strip().lower()
        if key in DRM_NAMES:
            return DRM_NAMES[key]
        try:
            uid = UUID(key)
        except ValueError:
            raise ValueError(f"unknown DRM system {name!r}") from None
        if uid in SYSTEM_ID_TO_DRM:
            return SYSTEM_ID_TO_DRM[uid]
        raise ValueError(f"unsupported DRM system id {uid}")

    @property
    def label(self) -> str:
        return _DRM_LABELS[self]


DRM_NAMES: Final[dict[str, DrmSystem]] = {
    "widevine": DrmSystem.WIDEVINE,
    "playready": DrmSystem.PLAYREADY,
    "fairplay": DrmSystem.FAIRPLAY,
    "clearkey": DrmSystem.CLEARKEY,
    "aes-128": DrmSystem.AES128,
    "aes128": DrmSystem.AES128,
    "identity": DrmSystem.AES128,
}

_DRM_LABELS: Final[dict[DrmSystem, str]] = {
    DrmSystem.WIDEVINE: "widevine",
    DrmSystem.PLAYREADY: "playready",
    DrmSystem.FAIRPLAY: "fairplay",
    DrmSystem.CLEARKEY: "clearkey",
    DrmSystem.AES128: "aes-128",
}

# Accepted aliases on input (responses from other servers); we emit the DrmSystem values.
SYSTEM_ID_TO_DRM: Final[dict[UUID, DrmSystem]] = {
    WIDEVINE: DrmSystem.WIDEVINE,
    PLAYREADY: DrmSystem.PLAYREADY,
    FAIRPLAY: DrmSystem.FAIRPLAY,
    W3C_COMMON: DrmSystem.CLEARKEY,
    DASHIF_CLEARKEY: DrmSystem.CLEARKEY,
    CLEARKEY_AES128: DrmSystem.AES128,
    HLS_AES128_UNOFFICIAL: DrmSystem.AES128,
    CLEARKEY_SAMPLE_AES: DrmSystem.AES128,
}


def request_system_id(drm: DrmSystem, cpix_scheme: str | None) -> UUID:
    """The ``DRMSystem@systemId`` we send for ``drm``: its own, except identity keys used for
    SAMPLE-AES / cbcs (``cpix_scheme`` 'cbcs'), which are DASH-IF's "HLS CBCS" Clear Key system;
    ``3ea8778f-…`` is HLS AES-128 (whole-segment CBC), signalled ``METHOD=AES-128``."""
    if drm is DrmSystem.AES128 and cpix_scheme == "cbcs":
        return CLEARKEY_SAMPLE_AES
    return drm.system_id


# --- XML namespaces -----------------------------------------------------------------------------
NS_CPIX: Final = "urn:dashif:org:cpix"
NS_PSKC: Final = "urn:ietf:params:xml:ns:keyprov:pskc"
NS_SPEKE: Final = "urn:aws:amazon:com:speke"
NS_DS: Final = "http://www.w3.org/2000/09/xmldsig#"
NS_XENC: Final = "http://www.w3.org/2001/04/xmlenc#"
NS_CENC: Final = "urn:mpeg:cenc:2013"
NS_MSPR: Final = "urn:microsoft:playready"
NS_DASHIF_CPS: Final = "https://dashif.org/CPS"
NS_MPD: Final = "urn:mpeg:dash:schema:mpd:2011"
# ISO/IEC 23009-1 profile of the live MPDs we write (SegmentTemplate addressing)
DASH_PROFILE_LIVE: Final = "urn:mpeg:dash:profile:isoff-live:2011"
# UTCTiming schemes of live MPDs (ISO/IEC 23009-1 5.8.5.7): the time in the value itself, or a
# URL answering an ISO 8601 time
DASH_UTC_DIRECT: Final = "urn:mpeg:dash:utc:direct:2014"
DASH_UTC_HTTP_ISO: Final = "urn:mpeg:dash:utc:http-iso:2014"
NS_XLINK: Final = "http://www.w3.org/1999/xlink"
NS_XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"

# --- Algorithm URIs for CPIX encrypted content keys (CPIX §4.2, XML-Enc) ------------------------
ALG_RSA_OAEP_MGF1P: Final = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
ALG_AES256_CBC: Final = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"
ALG_HMAC_SHA512: Final = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha512"

# --- SPEKE --------------------------------------------------------------------------------------
SPEKE_VERSION_HEADER: Final = "x-speke-version"  # sent in lower case (speke.md §1)
SPEKE_USER_AGENT_HEADER: Final = "x-speke-user-agent"
SPEKE_V1_USER_AGENT_HEADER: Final = "speke-user-agent"


class SpekeVersion(enum.Enum):
    """SPEKE protocol version; value is the ``X-Speke-Version`` header (None for v1)."""

    V1_0 = "1.0"
    V2_0 = "2.0"
    V2_1 = "2.1"

    @property
    def header(self) -> str | None:
        return None if self is SpekeVersion.V1_0 else self.value

    @property
    def cpix_version(self) -> str | None:
        return {SpekeVersion.V1_0: None, SpekeVersion.V2_0: "2.3", SpekeVersion.V2_1: "2.4"}[self]

    @property
    def is_v2(self) -> bool:
        return self is not SpekeVersion.V1_0


# --- Encryption schemes -------------------------------------------------------------------------
class Scheme(enum.Enum):
    """How media is encrypted."""

    CENC = "cenc"  # ISO CENC AES-CTR (fMP4)
    CBCS = "cbcs"  # ISO CENC AES-CBC 1:9 pattern (fMP4)
    AES_128 = "aes-128"  # HLS whole-segment AES-128-CBC (TS or fMP4)
    SAMPLE_AES = "sample-aes"  # HLS SAMPLE-AES on MPEG-TS

    @property
    def cpix_scheme(self) -> str:
        """``ContentKey@commonEncryptionScheme`` for SPEKE v2 (AES-128 -> cbc1 per MediaPackage;
        SAMPLE-AES TS -> cbcs)."""
        return {
            Scheme.CENC: "cenc",
            Scheme.CBCS: "cbcs",
            Scheme.AES_128: "cbc1",
            Scheme.SAMPLE_AES: "cbcs",
        }[self]

    @property
    def hls_method(self) -> str:
        return {
            Scheme.CENC: "SAMPLE-AES-CTR",
            Scheme.CBCS: "SAMPLE-AES",
            Scheme.AES_128: "AES-128",
            Scheme.SAMPLE_AES: "SAMPLE-AES",
        }[self]


class Packaging(enum.Enum):
    DASH = "dash"
    HLS_TS = "hls-ts"
    HLS_FMP4 = "hls-fmp4"  # alias cmaf

    @classmethod
    def parse(cls, text: str) -> Packaging:
        t = text.strip().lower()
        if t in ("cmaf", "hls-cmaf"):
            return cls.HLS_FMP4
        return cls(t)


# --- HLS KEYFORMATs (speke.md §7, media-encryption.md §8.1) -------------------------------------
KEYFORMAT_IDENTITY: Final = "identity"
KEYFORMAT_FAIRPLAY: Final = "com.apple.streamingkeydelivery"
KEYFORMAT_PLAYREADY: Final = "com.microsoft.playready"
KEYFORMAT_WIDEVINE: Final = f"urn:uuid:{WIDEVINE}"
KEYFORMAT_CLEARKEY: Final = "org.w3.clearkey"

DRM_KEYFORMAT: Final[dict[DrmSystem, str]] = {
    DrmSystem.WIDEVINE: KEYFORMAT_WIDEVINE,
    DrmSystem.PLAYREADY: KEYFORMAT_PLAYREADY,
    DrmSystem.FAIRPLAY: KEYFORMAT_FAIRPLAY,
    DrmSystem.CLEARKEY: KEYFORMAT_CLEARKEY,
    DrmSystem.AES128: KEYFORMAT_IDENTITY,
}

# --- DASH ---------------------------------------------------------------------------------------
DASH_MP4PROTECTION_SCHEME: Final = "urn:mpeg:dash:mp4protection:2011"
DASH_CP_VALUE: Final[dict[DrmSystem, str]] = {
    DrmSystem.WIDEVINE: "Widevine",
    DrmSystem.PLAYREADY: "MSPR 2.0",
    DrmSystem.CLEARKEY: "ClearKey1.0",
}

# --- SPEKE v2 encryption-contract presets (speke.md §4) -----------------------------------------
SD_MAX_PIXELS: Final = 589_824  # 1024x576
HD1_MAX_PIXELS: Final = 921_600  # 1280x720
HD_MAX_PIXELS: Final = 2_073_600  # 1920x1080
UHD1_MAX_PIXELS: Final = 8_847_360  # 4096x2160

VIDEO_PRESETS: Final = (*tuple(f"PRESET-VIDEO-{i}" for i in range(1, 9)), "SHARED", "UNENCRYPTED")
AUDIO_PRESETS: Final = (*tuple(f"PRESET-AUDIO-{i}" for i in range(1, 4)), "SHARED", "UNENCRYPTED")

# --- ISO BMFF scheme fourccs --------------------------------------------------------------------
FOURCC_CENC: Final = b"cenc"
FOURCC_CBCS: Final = b"cbcs"
