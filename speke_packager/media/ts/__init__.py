"""MPEG-TS for HLS: probing and SAMPLE-AES encryption, one segment at a time.

Whole-segment AES-128 lives in :mod:`speke_packager.media.aes128` (it is container-neutral).
"""

from __future__ import annotations

from .probe import probe_ts
from .sample_aes import SampleAesEncryptor, decrypt_sample_aes, encrypt_sample_aes

__all__ = ["SampleAesEncryptor", "decrypt_sample_aes", "encrypt_sample_aes", "probe_ts"]
