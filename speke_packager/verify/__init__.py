"""End-to-end verification: independent decryption (``verify``) and browser playback (``serve``).
"""

from __future__ import annotations

from .verify import (
    Check,
    RenditionReport,
    VerifyReport,
    fetch_clearkey_keys,
    package_protection,
    verify_package,
)

__all__ = [
    "Check",
    "RenditionReport",
    "VerifyReport",
    "fetch_clearkey_keys",
    "package_protection",
    "verify_package",
]
