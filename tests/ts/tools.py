"""Test helpers for tests/ts: cutting segments with ffmpeg, FFmpeg's HLS reader, openssl, and an
independent minimal TS reader/writer (written for the tests, not shared with the package)."""

from __future__ import annotations

import itertools
import subprocess
from dataclasses import dataclass
from pathlib import Path

from speke_packager._tools import find_tool

KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
WRONG_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3d")
IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


def ffmpeg() -> str:
    p = find_tool("ffmpeg")
    assert p
    return p


def cut_segments(src: Path, out_dir: Path, seconds: float = 2.0) -> list[Path]:
    """Cut a TS into HLS segments with ffmpeg's hls muxer (stream copy)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
                    "-map", "0", "-c", "copy", "-f", "hls", "-hls_time", str(seconds),
                    "-hls_list_size", "0", "-hls_segment_filename", str(out_dir / "clear%d.ts"),
                    str(out_dir / "clear.m3u8")], check=True)
    segs = sorted(out_dir.glob("clear*.ts"), key=lambda p: int(p.stem[5:]))
    assert len(segs) >= 3, "need several segments"
    return segs


def write_playlist(path: Path, segments: list[str], *, key_line: str | None = None,
                   repeat_last: bool = False, media_sequence: int = 0,
                   map_uri: str | None = None, map_after_key: bool = False) -> Path:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:4",
             f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}", "#EXT-X-PLAYLIST-TYPE:VOD"]
    map_line = f'#EXT-X-MAP:URI="{map_uri}"' if map_uri else None
    if map_line and not map_after_key:
        lines.append(map_line)
    if key_line:
        lines.append(key_line)
    if map_line and map_after_key:
        lines.append(map_line)
    for s in segments:
        lines += ["#EXTINF:2.0,", s]
    if repeat_last:
        lines += ["#EXT-X-DISCONTINUITY", "#EXTINF:2.0,", segments[-1]]
    lines.append("#EXT-X-ENDLIST")
    path.write_text("\n".join(lines) + "\n")
    return path


def hls_frames(playlist: Path, stream: str, *, decode: bool = True) -> list[str]:
    """Frame (or packet, decode=False) MD5s of one stream read through FFmpeg's HLS demuxer.

    Returns [] when FFmpeg fails (a wrong key may make it fail or produce garbage)."""
    cmd = [ffmpeg(), "-hide_banner", "-loglevel", "error", "-allowed_extensions", "ALL",
           "-i", str(playlist), "-map", f"0:{stream}"]
    if not decode:
        cmd += ["-c", "copy"]
    cmd += ["-f", "framemd5", "-"]
    res = subprocess.run(cmd, capture_output=True, check=False, cwd=playlist.parent)
    if res.returncode != 0:
        return []
    # stream, dts, pts, duration, size, hash[, side data]: the packet/frame hash is column 5
    return [ln.split(",")[5].strip() for ln in res.stdout.decode().splitlines()
            if ln and not ln.startswith("#")]


def openssl_decrypt(data: bytes, key: bytes, iv: bytes) -> bytes | None:
    """``openssl enc -d -aes-128-cbc``; None when openssl reports a bad decrypt."""
    res = subprocess.run(["openssl", "enc", "-d", "-aes-128-cbc", "-K", key.hex(), "-iv",
                          iv.hex()], input=data, capture_output=True, check=False)
    return res.stdout if res.returncode == 0 else None


def openssl_encrypt(data: bytes, key: bytes, iv: bytes) -> bytes:
    res = subprocess.run(["openssl", "enc", "-e", "-aes-128-cbc", "-K", key.hex(), "-iv",
                          iv.hex()], input=data, capture_output=True, check=True)
    return res.stdout


# --- an independent, deliberately simple TS reader for assertions ---------------------------

@dataclass
class Pkt:
    index: int
    pid: int
    pusi: bool
    afc: int
    cc: int
    af: bytes  # adaptation field incl. its length byte, b"" if none
    payload: bytes
    raw: bytes

    @property
    def pcr(self) -> int | None:
        if len(self.af) >= 8 and self.af[0] > 0 and self.af[1] & 0x10:
            b = self.af[2:8]
            base = (b[0] << 25) | (b[1] << 17) | (b[2] << 9) | (b[3] << 1) | (b[4] >> 7)
            return base * 300 + (((b[4] & 1) << 8) | b[5])
        return None


def read_packets(data: bytes) -> list[Pkt]:
    assert len(data) % 188 == 0
    out = []
    for i in range(len(data) // 188):
        p = data[i * 188 : (i + 1) * 188]
        assert p[0] == 0x47
        afc = (p[3] >> 4) & 3
        pos = 4
        af = b""
        if afc & 2:
            af = p[4 : 5 + p[4]]
            pos = 5 + p[4]
        out.append(Pkt(i, ((p[1] & 0x1F) << 8) | p[2], bool(p[1] & 0x40), afc, p[3] & 15, af,
                       p[pos:] if afc & 1 else b"", p))
    return out


def crc32_mpeg(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def pmt_of(data: bytes) -> tuple[int, bytes, list[tuple[int, int, bytes]]]:
    """(PMT PID, section, [(stream_type, pid, es_info)]) from the first PAT/PMT."""
    pkts = read_packets(data)
    pat = next(p for p in pkts if p.pid == 0 and p.pusi)
    sec = pat.payload[1 + pat.payload[0]:]
    pmt_pid = ((sec[10] & 0x1F) << 8) | sec[11]
    pm = next(p for p in pkts if p.pid == pmt_pid and p.pusi)
    s = pm.payload[1 + pm.payload[0]:]
    n = 3 + (((s[1] & 15) << 8) | s[2])
    s = s[:n]
    assert crc32_mpeg(s[:-4]) == int.from_bytes(s[-4:], "big"), "PMT CRC"
    pil = ((s[10] & 15) << 8) | s[11]
    pos = 12 + pil
    streams = []
    while pos < n - 4:
        el = ((s[pos + 3] & 15) << 8) | s[pos + 4]
        streams.append((s[pos], ((s[pos + 1] & 0x1F) << 8) | s[pos + 2], s[pos + 5 : pos + 5 + el]))
        pos += 5 + el
    return pmt_pid, s, streams


def pes_list(data: bytes, pid: int) -> list[bytes]:
    """Whole PES packets (header included) of one PID."""
    out: list[bytes] = []
    cur: bytearray | None = None
    for p in read_packets(data):
        if p.pid != pid or not p.payload:
            continue
        if p.pusi:
            if cur is not None:
                out.append(bytes(cur))
            cur = bytearray(p.payload)
        elif cur is not None:
            cur += p.payload
    if cur is not None:
        out.append(bytes(cur))
    return out


def es_of(pes: bytes) -> bytes:
    return pes[9 + pes[8]:]


def nals(es: bytes) -> list[bytes]:
    """Annex B NAL units (trailing zeros belong to the next start code)."""
    out = []
    i = es.find(b"\x00\x00\x01")
    while i != -1:
        j = es.find(b"\x00\x00\x01", i + 3)
        end = len(es) if j == -1 else j
        nal = es[i + 3 : end].rstrip(b"\x00") if j != -1 else es[i + 3 : end]
        if nal:
            out.append(nal)
        i = j
    return out


def check_cc(pkts: list[Pkt]) -> list[str]:
    """Continuity errors per ISO 13818-1 (payload packets +1 mod 16; AF-only keep)."""
    last: dict[int, int] = {}
    errors = []
    for p in pkts:
        if p.pid == 0x1FFF:
            continue
        if p.pid in last:
            disc = len(p.af) > 1 and p.af[0] > 0 and p.af[1] & 0x80
            want = (last[p.pid] + 1) % 16 if p.payload else last[p.pid]
            if p.cc != want and not disc:
                errors.append(f"packet {p.index} PID {p.pid:#x}: cc {p.cc} != {want}")
        last[p.pid] = p.cc
    return errors


# --- a minimal TS writer: PES that fill their packets exactly (no stuffing) -----------------

def _pkt(pid: int, cc: int, payload: bytes, *, pusi: bool, pcr: int | None = None) -> bytes:
    head = bytes((0x47, (0x40 if pusi else 0) | (pid >> 8), pid & 0xFF))
    if pcr is None and len(payload) == 184:
        return head + bytes((0x10 | cc,)) + payload
    af = bytearray()
    if pcr is not None:
        base, ext = divmod(pcr, 300)
        af += bytes((0x10,)) + bytes(((base >> 25) & 0xFF, (base >> 17) & 0xFF, (base >> 9) & 0xFF,
                                     (base >> 1) & 0xFF, ((base & 1) << 7) | 0x7E | (ext >> 8),
                                     ext & 0xFF))
    room = 184 - len(payload) - 1
    assert room >= len(af)
    if room > 0:
        af = af or bytearray(b"\x00")
        af += b"\xff" * (room - len(af))
    return head + bytes((0x30 | cc,)) + bytes((room,)) + bytes(af) + payload


def _pts(flag: int, ts: int) -> bytes:
    return bytes(((flag << 4) | (((ts >> 30) & 7) << 1) | 1, (ts >> 22) & 0xFF,
                  (((ts >> 15) & 0x7F) << 1) | 1, (ts >> 7) & 0xFF, ((ts & 0x7F) << 1) | 1))


def mux_exact(access_units: list[bytes], *, extra_pid_payload: bytes | None = None,
              af_only_pcr: bool = False) -> bytes:
    """PAT + PMT + one video PES per access unit, each padded with a filler NAL (type 12) so
    that the PES fills its packets exactly (the first packet carries a PCR). Optionally a
    pass-through ID3 stream (type 0x15) on PID 0x102; optionally an adaptation-field-only
    packet with a PCR after each PES's first packet. Frame rate 25."""
    vpid, mpid = 0x100, 0x1000
    streams = bytes((0x1B,)) + (0xE000 | vpid).to_bytes(2, "big") + b"\xf0\x00"
    if extra_pid_payload is not None:
        streams += bytes((0x15,)) + (0xE000 | 0x102).to_bytes(2, "big") + b"\xf0\x00"
    body = b"\x00\x01\xc1\x00\x00" + (0xE000 | vpid).to_bytes(2, "big") + b"\xf0\x00" + streams
    sec = bytes((0x02, 0xB0 | ((len(body) + 4) >> 8), (len(body) + 4) & 0xFF)) + body
    sec += crc32_mpeg(sec).to_bytes(4, "big")
    pat = b"\x00\xb0\x0d\x00\x01\xc1\x00\x00\x00\x01" + (0xE000 | mpid).to_bytes(2, "big")
    pat += crc32_mpeg(pat).to_bytes(4, "big")
    out = bytearray()
    out += _pkt(0, 0, (b"\x00" + pat).ljust(184, b"\xff"), pusi=True)
    out += _pkt(mpid, 0, (b"\x00" + sec).ljust(184, b"\xff"), pusi=True)
    cc = 0
    for n, au in enumerate(access_units):
        pts = 90000 + n * 3600
        head_len = 9 + 5
        # first packet: 184 - 8 (AF with PCR) payload bytes; then 184 each
        total = head_len + len(au) + 6  # + minimal filler NAL (00 00 01 0c xx 80)
        k = 1
        while 176 + 184 * (k - 1) < total:
            k += 1
        cap = 176 + 184 * (k - 1)
        filler = b"\x00\x00\x01\x0c" + b"\xff" * (cap - head_len - len(au) - 5) + b"\x80"
        es = au + filler
        pes = b"\x00\x00\x01\xe0" + (len(es) + 8).to_bytes(2, "big") + b"\x80\x80\x05" + _pts(2, pts) + es
        assert len(pes) == cap
        out += _pkt(vpid, cc, pes[:176], pusi=True, pcr=pts * 300)
        if af_only_pcr:  # AF-only: keeps the CC of the packet before it
            base, ext = divmod(pts * 300 + 1800 * 300, 300)
            af = bytes((183, 0x10, (base >> 25) & 0xFF, (base >> 17) & 0xFF, (base >> 9) & 0xFF,
                        (base >> 1) & 0xFF, ((base & 1) << 7) | 0x7E | (ext >> 8), ext & 0xFF))
            out += bytes((0x47, vpid >> 8, vpid & 0xFF, 0x20 | cc)) + af + b"\xff" * (184 - len(af))
        cc = (cc + 1) % 16
        for off in range(176, len(pes), 184):
            out += _pkt(vpid, cc, pes[off : off + 184], pusi=False)
            cc = (cc + 1) % 16
    if extra_pid_payload is not None:
        pes = b"\x00\x00\x01\xbd" + (len(extra_pid_payload) + 3).to_bytes(2, "big") + b"\x80\x00\x00" + extra_pid_payload
        out += _pkt(0x102, 0, pes[:184], pusi=True)
    return bytes(out)


def split_access_units(h264: bytes) -> list[bytes]:
    """Split a raw Annex B H.264 stream (ffmpeg -f h264, with AUDs) at each AUD."""
    starts = []
    i = h264.find(b"\x00\x00\x00\x01\x09")
    while i != -1:
        starts.append(i)
        i = h264.find(b"\x00\x00\x00\x01\x09", i + 5)
    starts.append(len(h264))
    return [h264[a:b] for a, b in itertools.pairwise(starts) if b > a]
