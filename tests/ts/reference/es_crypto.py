"""SAMPLE-AES on elementary-stream bytes (Apple "MPEG-2 Stream Encryption Format for HTTP Live
Streaming"; media-encryption.md §3.1-§3.3). Both directions; the decryptor exists for tests.

Every protected block (an H.264 NAL body, an ADTS frame, an AC-3/E-AC-3 syncframe) is its own
AES-128-CBC message from the original IV, over whole 16-byte blocks only (no padding).

Hot path: one cipher call per protected block. For H.264 the encrypted 16-byte blocks of a NAL
(1 of every 10) are gathered into one buffer with 16 strided slice copies, encrypted in one
``update`` and scattered back the same way, whatever the NAL size.
"""

from __future__ import annotations

from speke_packager.crypto import aes_cbc_decryptor, aes_cbc_encryptor
from speke_packager.errors import CodecError
from speke_packager.media.codecs.ac3 import iter_syncframes
from speke_packager.media.codecs.adts import iter_adts_frames
from speke_packager.media.codecs.nal import escape_emulation, iter_annexb, unescape_emulation

__all__ = [
    "crypt_ac3_es",
    "crypt_adts_es",
    "decrypt_h264_es",
    "encrypt_h264_es",
    "encrypt_h264_nal",
]

_LEADER = 32  # clear bytes at the start of a protected NAL (header + 31)
_STRIDE = 160  # 1 encrypted block, 9 clear blocks
_SLICE_TYPES = (1, 5)


def _nal_blocks(length: int) -> int:
    """Encrypted blocks in a NAL of ``length`` escaped bytes: a block at 32 + 160k is
    encrypted only when more than 16 bytes remain from its start."""
    return 0 if length <= _LEADER + 16 else (length - _LEADER - 16 + _STRIDE - 1) // _STRIDE


def _crypt_pattern(nal: bytes, key: bytes, iv: bytes, encrypt: bool) -> bytes:
    nb = _nal_blocks(len(nal))
    stop = _LEADER + _STRIDE * (nb - 1) + 16
    if nb == 1:
        gathered = nal[_LEADER:stop]
    else:
        buf = bytearray(16 * nb)
        for j in range(16):  # 16 strided copies per NAL, independent of its size
            buf[j::16] = nal[_LEADER + j : stop : _STRIDE]
        gathered = bytes(buf)
    ctx = aes_cbc_encryptor(key, iv) if encrypt else aes_cbc_decryptor(key, iv)
    done = ctx.update(gathered) + ctx.finalize()
    out = bytearray(nal)
    if nb == 1:
        out[_LEADER:stop] = done
    else:
        for j in range(16):
            out[_LEADER + j : stop : _STRIDE] = done[j::16]
    return bytes(out)


def encrypt_h264_nal(nal: bytes, key: bytes, iv: bytes) -> bytes:
    """One NAL unit as stored (escaped, from its header byte): types 1 and 5 longer than 48
    bytes get the 1:9 pattern after a 32-byte clear leader, then one more emulation-prevention
    pass over the whole NAL; every other NAL is returned unchanged."""
    if (nal[0] & 0x1F) not in _SLICE_TYPES or len(nal) <= _LEADER + 16:
        return nal
    return escape_emulation(_crypt_pattern(nal, key, iv, True))


def _decrypt_h264_nal(nal: bytes, key: bytes, iv: bytes) -> bytes:
    if (nal[0] & 0x1F) not in _SLICE_TYPES or len(nal) <= _LEADER + 16:
        return nal
    return _crypt_pattern(unescape_emulation(nal), key, iv, False)


def _map_nals(es: bytes, key: bytes, iv: bytes, encrypt: bool) -> bytes:
    parts: list[bytes] = []
    prev = 0
    for start, end in iter_annexb(es):
        if (es[start] & 0x1F) not in _SLICE_TYPES or end - start <= _LEADER + 16:
            continue
        nal = es[start:end]
        parts.append(es[prev:start])
        parts.append(encrypt_h264_nal(nal, key, iv) if encrypt
                     else _decrypt_h264_nal(nal, key, iv))
        prev = end
    if not parts:
        return es
    parts.append(es[prev:])
    return b"".join(parts)


def encrypt_h264_es(es: bytes, key: bytes, iv: bytes) -> bytes:
    """SAMPLE-AES over the Annex B H.264 bytes of one PES (may grow through emulation
    prevention)."""
    return _map_nals(es, key, iv, True)


def decrypt_h264_es(es: bytes, key: bytes, iv: bytes) -> bytes:
    """Inverse of :func:`encrypt_h264_es`."""
    return _map_nals(es, key, iv, False)


def _crypt_ranges(buf: bytearray, ranges: list[tuple[int, int]], key: bytes, iv: bytes,
                  encrypt: bool) -> None:
    mv = memoryview(buf)
    for start, nblocks in ranges:
        ctx = aes_cbc_encryptor(key, iv) if encrypt else aes_cbc_decryptor(key, iv)
        end = start + 16 * nblocks
        mv[start:end] = ctx.update(mv[start:end]) + ctx.finalize()


def crypt_adts_es(buf: bytearray, key: bytes, iv: bytes, *, encrypt: bool = True) -> bytes:
    """SAMPLE-AES over every ADTS frame in ``buf`` (in place): header and 16 more bytes clear,
    whole blocks encrypted, the 0-15 byte tail clear. Returns the first frame's
    AudioSpecificConfig (``b""`` when there is no frame)."""
    ranges: list[tuple[int, int]] = []
    asc = b""
    for off, hdr in iter_adts_frames(buf):
        if not asc:
            asc = hdr.audio_specific_config()
        lead = hdr.header_size + 16
        n = (hdr.frame_length - lead) // 16
        if n > 0:
            ranges.append((off + lead, n))
    _crypt_ranges(buf, ranges, key, iv, encrypt)
    return asc


def crypt_ac3_es(buf: bytearray, key: bytes, iv: bytes, *, eac3: bool, encrypt: bool = True
                 ) -> bytes:
    """SAMPLE-AES over every AC-3 / E-AC-3 syncframe in ``buf`` (in place): 16 bytes clear,
    whole blocks encrypted, tail clear, IV reset per syncframe. Returns the first syncframe's
    first 10 bytes (the audio setup data source; ``b""`` if none)."""
    ranges: list[tuple[int, int]] = []
    first = b""
    for off, fr in iter_syncframes(buf):
        if fr.eac3 != eac3:
            what = "E-AC-3" if fr.eac3 else "AC-3"
            raise CodecError(f"{what} syncframe at offset {off} in a stream declared otherwise")
        if not first:
            first = bytes(buf[off : off + 10])
        n = (fr.frame_size - 16) // 16
        if n > 0:
            ranges.append((off + 16, n))
    _crypt_ranges(buf, ranges, key, iv, encrypt)
    return first
