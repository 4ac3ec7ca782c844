"""I-frame playlists over SAMPLE-AES TS: move each byte range to where its key frame landed.

An I-frame range covers the TS packets of one key-frame PES (after PAT/PMT). SAMPLE-AES keeps
packet order and every PES, but a PES may take more packets once encrypted, so ranges shift.
The range is found again by PES count: the n-th video PES of the segment stays the n-th.
"""

from __future__ import annotations

from ..errors import ManifestError

_TS = 188


def _packets(data: bytes) -> list[tuple[int, bool]]:
    """(PID, payload_unit_start) per packet."""
    if len(data) % _TS:
        raise ManifestError("TS segment length is not a multiple of 188")
    out = []
    for i in range(0, len(data), _TS):
        if data[i] != 0x47:
            raise ManifestError(f"TS sync byte missing at offset {i}")
        out.append((((data[i + 1] & 0x1F) << 8) | data[i + 2], bool(data[i + 1] & 0x40)))
    return out


def remap_ts_range(clear: bytes, encrypted: bytes, offset: int, length: int) -> tuple[int, int]:
    """(offset, length) in ``encrypted`` of the clear I-frame range ``length@offset``."""
    if offset % _TS or length % _TS or length <= 0:
        raise ManifestError(f"I-frame range {length}@{offset} is not TS-packet aligned")
    cp, ep = _packets(clear), _packets(encrypted)
    s, e = offset // _TS, (offset + length) // _TS
    if e > len(cp):
        raise ManifestError(f"I-frame range {length}@{offset} runs past the segment")
    starts = [i for i in range(s, e) if cp[i][1] and cp[i][0] not in (0, 0x1FFF)]
    if not starts:
        raise ManifestError(f"I-frame range {length}@{offset} holds no PES start")
    pid = cp[starts[0]][0]
    first = sum(1 for i in range(starts[0]) if cp[i] == (pid, True))  # PES ordinal
    last_pkt = max(i for i in range(s, e) if cp[i][0] == pid)
    last = sum(1 for i in range(last_pkt + 1) if cp[i] == (pid, True)) - 1
    lead = starts[0] - s  # packets of other PIDs before the PES start
    e_starts = [i for i, p in enumerate(ep) if p == (pid, True)]
    if last >= len(e_starts):
        raise ManifestError("the encrypted segment has fewer video PES than the clear one")
    begin = e_starts[first] - lead
    nxt = e_starts[last + 1] if last + 1 < len(e_starts) else len(ep)
    end = max(i for i in range(e_starts[last], nxt) if ep[i][0] == pid) + 1
    if begin < 0:
        raise ManifestError("cannot place the I-frame range in the encrypted segment")
    return begin * _TS, (end - begin) * _TS


def remap_fmp4_range(clear: bytes, encrypted: bytes, offset: int, length: int
                     ) -> tuple[int, int]:
    """(offset, length) in ``encrypted`` of an fMP4 I-frame range (a moof, the mdat header and
    the key frame's sample data). cenc/cbcs encrypt in place: only the moof grows."""
    from ..media.mp4.boxes import iter_boxes

    b_in, b_out = list(iter_boxes(clear)), list(iter_boxes(encrypted))
    moofs_in = [b for b in b_in if b.type == b"moof"]
    moofs_out = [b for b in b_out if b.type == b"moof"]
    k = next((i for i, b in enumerate(moofs_in) if b.start == offset), None)
    if k is None or len(moofs_in) != len(moofs_out):
        raise ManifestError(f"I-frame range {length}@{offset} does not start at a moof box")
    nxt = next((b for b in b_in if b.start == moofs_in[k].end), None)
    if nxt is None or nxt.type != b"mdat" or offset + length > nxt.end:
        raise ManifestError(f"I-frame range {length}@{offset} does not end inside its mdat")
    return moofs_out[k].start, length + moofs_out[k].size - moofs_in[k].size
