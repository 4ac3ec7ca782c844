"""SAMPLE-AES output over synthetic segments made here (no ffmpeg, so the same bytes on every
machine), pinned by recorded SHA-256 digests and compared with the frozen reference.

tests/ts/reference keeps the first implementation of the PES path only (es_crypto, pes,
sample_aes); TS packet indexing, the PAT/PMT code and the SAMPLE-AES PMT signalling, of which it
held verbatim copies, now come from the package. The digests were recorded from the reference
while it still had those copies, so they keep pinning the whole output (packets, PMT bytes,
grown PES, continuity padding); the structure checks use tests/ts/tools.py's own TS reader.

The segments exercise what the ffmpeg-made assets rarely reach: slices whose ciphertext needs
emulation prevention (the encrypted blocks are chosen, their plaintext found by decrypting),
PES that fill their packets exactly (growth needs new packets), AF-only PCR packets, and the
continuity-counter padding given to a PES that kept its size."""

from __future__ import annotations

import hashlib
import random

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from speke_packager.media.ts import SampleAesEncryptor, decrypt_sample_aes, encrypt_sample_aes

from .reference import sample_aes as ref
from .tools import IV, KEY, WRONG_KEY, check_cc, crc32_mpeg, es_of, pes_list, pmt_of, read_packets

VIDEO, AUDIO, ID3 = 0x100, 0x101, 0x102


def _escape(rbsp: bytes) -> bytes:
    """Emulation prevention (H.264 7.4.1): 03 after 00 00 before a byte <= 03."""
    out = bytearray()
    zeros = 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def _rbsp(rng: random.Random, n: int) -> bytes:
    """Random bytes with many zeros, so that plaintext and ciphertext both need escaping."""
    return bytes(0 if rng.random() < 0.08 else rng.randrange(256) for _ in range(n)) + b"\x80"


def _growing_slice(rng: random.Random, head: int, blocks: int) -> bytes:
    """A slice NAL (escaped) whose SAMPLE-AES ciphertext under KEY/IV has all-zero blocks,
    which need emulation prevention: the NAL grows when encrypted. The plaintext of each
    encrypted block (at 32 + 160 * j of the unescaped NAL, CBC from IV) is found by decrypting
    the wanted ciphertext."""
    ecb = Cipher(algorithms.AES(KEY), modes.ECB()).decryptor()
    nal = bytearray(bytes((head,)) + rng.randbytes(31))
    prev = IV
    for _ in range(blocks):
        want = bytes(16) if rng.random() < 0.6 else rng.randbytes(16)
        nal += bytes(a ^ b for a, b in zip(ecb.update(want), prev, strict=True))
        nal += rng.randbytes(144)
        prev = want
    return _escape(bytes(nal) + rng.randbytes(rng.randrange(0, 16)) + b"\x80")


def _access_unit(rng: random.Random, idr: bool) -> bytes:
    au = b"\x00\x00\x00\x01\x09\xf0"
    if idr:  # SPS/PPS-like NALs stay clear
        au += b"\x00\x00\x00\x01\x67" + _escape(_rbsp(rng, 20))
        au += b"\x00\x00\x00\x01\x68" + _escape(_rbsp(rng, 4))
    for k in range(rng.choice((1, 1, 2))):
        head = 0x65 if idr else 0x41
        au += b"\x00\x00\x00\x01" if k == 0 else b"\x00\x00\x01"
        if rng.random() < 0.5:
            au += _growing_slice(rng, head, rng.randrange(1, 12))
        else:
            au += bytes((head,)) + _escape(_rbsp(rng, rng.choice(
                (20, 47, 48, 49, rng.randrange(50, 5000)))))
    return au


def _fill_exactly(es: bytes, header: int, first: int) -> bytes:
    """``es`` and a filler NAL (type 12) so that the PES fills its packets with no room left:
    growth then needs new packets."""
    total = header + len(es) + 6
    cap = first
    while cap < total:
        cap += 184
    return es + b"\x00\x00\x01\x0c" + b"\xff" * (cap - header - len(es) - 5) + b"\x80"


def _adts(rng: random.Random, n: int) -> bytes:
    """``n`` AAC-LC stereo 48 kHz ADTS frames of random sizes and payloads."""
    out = b""
    for _ in range(n):
        length = rng.randrange(8, 600)
        head = (0xFFF << 44) | (1 << 40) | (1 << 38) | (3 << 34) | (2 << 30) | (length << 13) \
            | (0x7FF << 2)
        out += head.to_bytes(7, "big") + rng.randbytes(length - 7)
    return out


def _pts(flag: int, ts: int) -> bytes:
    return bytes(((flag << 4) | (((ts >> 30) & 7) << 1) | 1, (ts >> 22) & 0xFF,
                  (((ts >> 15) & 0x7F) << 1) | 1, (ts >> 7) & 0xFF, ((ts & 0x7F) << 1) | 1))


class _Mux:
    def __init__(self) -> None:
        self.out = bytearray()
        self.cc: dict[int, int] = {}

    def packet(self, pid: int, payload: bytes, *, pusi: bool, pcr: int | None = None,
               af_only: bool = False) -> None:
        cc = self.cc.get(pid, 15)
        if not af_only:
            cc = self.cc[pid] = (cc + 1) % 16
        head = bytes((0x47, (0x40 if pusi else 0) | (pid >> 8), pid & 0xFF))
        af = b""
        if pcr is not None:
            base, ext = divmod(pcr, 300)
            af = bytes((0x10, (base >> 25) & 0xFF, (base >> 17) & 0xFF, (base >> 9) & 0xFF,
                        (base >> 1) & 0xFF, ((base & 1) << 7) | 0x7E | (ext >> 8), ext & 0xFF))
        if af_only:
            body = af.ljust(183, b"\xff")
            self.out += head + bytes((0x20 | cc, 183)) + body
            return
        room = 184 - len(payload)
        if room == 0 and not af:
            self.out += head + bytes((0x10 | cc,)) + payload
            return
        assert room >= 1 + len(af)
        flags = af or (b"\x00" if room > 1 else b"")
        self.out += head + bytes((0x30 | cc, room - 1)) + flags.ljust(room - 1, b"\xff") + payload

    def pes(self, pid: int, pes: bytes, *, pcr: int | None = None) -> None:
        first = 184 - (8 if pcr is not None else 0)
        self.packet(pid, pes[:first], pusi=True, pcr=pcr)
        for off in range(first, len(pes), 184):
            self.packet(pid, pes[off : off + 184], pusi=False)

    def section(self, pid: int, table: bytes) -> None:
        sec = table + crc32_mpeg(table).to_bytes(4, "big")
        self.packet(pid, (b"\x00" + sec).ljust(184, b"\xff"), pusi=True)


def synthetic_segment(seed: int, *, frames: int = 30, audio: bool = True) -> bytes:
    """PAT, PMT (H.264, AAC unless ``audio`` is off, ID3), ``frames`` video PES (IDR first,
    unbounded or exact PES_packet_length, PCR in the first packet, some AF-only PCR packets,
    stuffing in last packets), an audio PES every other frame, one ID3 PES."""
    rng = random.Random(seed)
    mux = _Mux()
    streams = bytes((0x1B,)) + (0xE000 | VIDEO).to_bytes(2, "big") + b"\xf0\x00"
    if audio:
        streams += bytes((0x0F,)) + (0xE000 | AUDIO).to_bytes(2, "big") + b"\xf0\x00"
    streams += bytes((0x15,)) + (0xE000 | ID3).to_bytes(2, "big") + b"\xf0\x00"
    body = b"\x00\x01\xc1\x00\x00" + (0xE000 | VIDEO).to_bytes(2, "big") + b"\xf0\x00" + streams
    mux.section(0, b"\x00\xb0\x0d\x00\x01\xc1\x00\x00\x00\x01\xf0\x00")
    mux.section(0x1000, bytes((0x02, 0xB0 | ((len(body) + 4) >> 8), (len(body) + 4) & 0xFF))
                + body)
    for n in range(frames):
        pts = 90000 + 3600 * n
        es = _access_unit(rng, idr=n % 10 == 0)
        if rng.random() < 0.5:
            es = _fill_exactly(es, 14, 176)
        length = 0 if rng.random() < 0.5 else len(es) + 8
        mux.pes(VIDEO, b"\x00\x00\x01\xe0" + length.to_bytes(2, "big") + b"\x80\x80\x05"
                + _pts(2, pts) + es, pcr=pts * 300)
        if rng.random() < 0.2:
            mux.packet(VIDEO, b"", pusi=False, pcr=(pts + 1800) * 300, af_only=True)
        if audio and n % 2 == 0:
            aes = _adts(rng, rng.randrange(1, 5))
            mux.pes(AUDIO, b"\x00\x00\x01\xc0" + (len(aes) + 8).to_bytes(2, "big")
                    + b"\x80\x80\x05" + _pts(2, pts) + aes)
        if n == frames // 2:
            tag = b"ID3\x04\x00\x00\x00\x00\x00\x10" + rng.randbytes(16)
            mux.pes(ID3, b"\x00\x00\x01\xbd" + (len(tag) + 3).to_bytes(2, "big")
                    + b"\x80\x00\x00" + tag)
    return bytes(mux.out)


SEGMENTS = {f"seed{s}": synthetic_segment(s) for s in (1, 2, 3)}
SEGMENTS["video-only"] = synthetic_segment(4, audio=False)
SEGMENTS["short"] = synthetic_segment(5, frames=3)

# sha256 of encrypt_sample_aes(segment, KEY, IV) and of its decryption, recorded from the
# frozen reference with its own packet, PSI and PMT code (before those copies were removed)
RECORDED: dict[str, tuple[str, str]] = {
    "seed1": ("705288958ffd7432bc7cfe055deb6ec5d44135b9bc4177aeb507a91cd5c29847",
              "ec782150f9dd01db1c286c7a89bc3de51fa2ae842c49387b20f2307d23c2bef4"),
    "seed2": ("6a7106a92604fa31eb3f35ed36e96218e6a94599cde1e982eb08f7e00dcb4c60",
              "fd8ef5e6fbcc450ef2712c57f456aaa23162a9a3032a76db34b4a44b97aa56bb"),
    "seed3": ("25f4c3ca4a1c9e1ed0f35b1e87fa8287d2c3b87ce79870b42211a75bfabd90a4",
              "9e8d0695663d45437a15156db4f1891540ce895a6c1b3cbcca545ca41d507fdd"),
    "short": ("72862b84fc5acb4ddb464dd4eeac3bd90a265b488ce4cf2950945ede8a3ce4fc",
              "3ce359ce565e8c9967885910ef10f3f7f738739d528ff06c88da88608b0a0cc0"),
    "video-only": ("bcb5e7f5b05930c33f9e4e3f0a581e4fa6cbf2fd6119192ff67b3564bb38926c",
                   "86598eecb9fed93df57037d4062e123a02b431dd718380f0b20fe35830ee5cb0"),
}
# sha256 of the five segments encrypted in turn by one SampleAesEncryptor
RECORDED_INSTANCE = "4a24ef12affcbbf6b887928f3b37f1c09eb68fe3cb1b55ba9b1eb84c3feb7046"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_synthetic_input_is_valid_ts() -> None:
    """The generator makes what the assertions below assume (checked with the independent
    reader): continuous CC, a PMT with a good CRC, PES that grow once encrypted."""
    for name, seg in SEGMENTS.items():
        assert check_cc(read_packets(seg)) == [], name
        types = [t for t, _, _ in pmt_of(seg)[2]]
        assert types == ([0x1B, 0x15] if name == "video-only" else [0x1B, 0x0F, 0x15])
    # every segment grows (re-packetised PES, CC padding)
    assert all(len(encrypt_sample_aes(s, KEY, IV)) > len(s) for s in SEGMENTS.values())


@pytest.mark.parametrize("name", sorted(SEGMENTS))
def test_output_matches_the_recorded_digest(name: str) -> None:
    seg = SEGMENTS[name]
    enc = encrypt_sample_aes(seg, KEY, IV)
    dec = decrypt_sample_aes(enc, KEY, IV)
    assert (_digest(enc), _digest(dec)) == RECORDED[name]
    assert enc == ref.encrypt_sample_aes(seg, KEY, IV)
    # independent checks of what the digest pins
    clear_pkts, enc_pkts = read_packets(seg), read_packets(enc)
    assert check_cc(enc_pkts) == []
    assert (len(enc) - len(seg)) % (188 * 16) == 0  # packets added in multiples of 16 ...
    assert {p.pid: p.cc for p in enc_pkts} == {p.pid: p.cc for p in clear_pkts}  # CC joins
    for p in enc_pkts:  # never 0xFF padding inside a PES payload
        assert p.payload or p.af
    for pid in (VIDEO, AUDIO):
        assert [es_of(p) for p in pes_list(dec, pid)] == [es_of(p) for p in pes_list(seg, pid)]
    # negative control: another key, other bytes
    assert _digest(encrypt_sample_aes(seg, WRONG_KEY, IV)) != RECORDED[name][0]


def test_instance_across_segments_matches_the_recorded_digest() -> None:
    enc = SampleAesEncryptor(KEY, IV)
    out = b"".join(enc.encrypt_segment(SEGMENTS[n]) for n in sorted(SEGMENTS))
    assert _digest(out) == RECORDED_INSTANCE
