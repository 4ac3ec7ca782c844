"""fMP4 / CMAF Common Encryption (``cenc``, ``cbcs``): init and media segments.

``probe_init`` reads the tracks of an init segment; :class:`Mp4Encryptor` writes the protected
init and encrypts media segments one at a time (bytes, pieces or file to file with
``encrypt_segment_file``) or a whole file as a stream;
:class:`Mp4Decryptor` reverses it for round-trip tests.
"""

from __future__ import annotations

from .decryptor import Mp4Decryptor
from .encryptor import Mp4Encryptor
from .init import probe_init

__all__ = ["Mp4Decryptor", "Mp4Encryptor", "probe_init"]
