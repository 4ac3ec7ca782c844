"""End-to-end verification: independent decryption (``verify``) and browser playback (``serve``).
"""

from __future__ import annotations

from .keys import fetch_clearkey_keys
from .package_check import package_protection, verify_package
from .report import Check, RenditionReport, VerifyReport

__all__ = [
    "Check",
    "RenditionReport",
    "VerifyReport",
    "fetch_clearkey_keys",
    "package_protection",
    "verify_package",
]
