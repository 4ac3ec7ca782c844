"""speke-packager: encryptor-side SPEKE client, local key server, media encryption, manifests."""

from __future__ import annotations

from .constants import DrmSystem, Packaging, Scheme, SpekeVersion
from .errors import SpekePackagerError
from .model import ContentKey, DrmSignal, KeyEntry, KeyPeriod, KeySet, TrackInfo, TrackKind

__version__ = "0.1.0"

__all__ = [
    "ContentKey",
    "DrmSignal",
    "DrmSystem",
    "KeyEntry",
    "KeyPeriod",
    "KeySet",
    "Packaging",
    "Scheme",
    "SpekePackagerError",
    "SpekeVersion",
    "TrackInfo",
    "TrackKind",
    "__version__",
]
