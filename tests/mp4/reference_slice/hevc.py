"""HEVC parameter sets and slice-segment-header length (ITU-T H.265 7.3.2.2, 7.3.2.3, 7.3.6).

:func:`slice_header_size` returns the length in escaped bytes from the first byte of the NAL unit
(2-byte NAL header included) to the end of ``byte_alignment()``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from speke_packager.errors import CodecError

from .bits import BitReader, escaped_length, unescape_prefix
from .paramsets import ParamSets

__all__ = [
    "HevcConfig",
    "HevcParamSets",
    "HevcPps",
    "HevcSps",
    "nal_type",
    "parse_hvcc",
    "parse_pps",
    "parse_sps",
    "slice_header_size",
]

NAL_VPS = 32
NAL_SPS = 33
NAL_PPS = 34


def nal_type(first_byte: int) -> int:
    return (first_byte >> 1) & 0x3F


def is_vcl(t: int) -> bool:
    return t < 32


@dataclass(frozen=True, slots=True)
class StRps:
    neg: tuple[tuple[int, bool], ...]  # (delta_poc, used_by_curr) for S0
    pos: tuple[tuple[int, bool], ...]

    @property
    def num_delta_pocs(self) -> int:
        return len(self.neg) + len(self.pos)

    @property
    def used(self) -> int:
        return sum(u for _, u in self.neg) + sum(u for _, u in self.pos)


@dataclass(frozen=True, slots=True)
class HevcSps:
    sps_id: int
    chroma_array_type: int
    separate_colour_plane: bool
    log2_max_poc_lsb: int
    pic_size_in_ctbs: int
    sample_adaptive_offset: bool
    rps: tuple[StRps, ...]
    long_term_ref_pics_present: bool
    num_long_term_ref_pics_sps: int
    lt_used_by_curr: tuple[bool, ...]
    temporal_mvp: bool
    width: int = 0  # luma samples after the conformance window
    height: int = 0


@dataclass(frozen=True, slots=True)
class HevcPps:
    pps_id: int
    sps_id: int
    dependent_slice_segments_enabled: bool
    output_flag_present: bool
    num_extra_slice_header_bits: int
    cabac_init_present: bool
    num_ref_idx_l0_default: int
    num_ref_idx_l1_default: int
    slice_chroma_qp_offsets_present: bool
    weighted_pred: bool
    weighted_bipred: bool
    tiles_enabled: bool
    entropy_coding_sync: bool
    loop_filter_across_slices: bool
    deblocking_override_enabled: bool
    pps_deblocking_disabled: bool
    lists_modification_present: bool
    slice_header_extension_present: bool
    chroma_qp_offset_list_enabled: bool


def _profile_tier_level(r: BitReader, max_sub_layers_minus1: int) -> None:
    r.skip(96)
    prof = []
    for _ in range(max_sub_layers_minus1):
        prof.append((r.flag(), r.flag()))
    if max_sub_layers_minus1 > 0:
        r.skip(2 * (8 - max_sub_layers_minus1))
    for p, lv in prof:
        if p:
            r.skip(88)
        if lv:
            r.skip(8)


def _scaling_list_data(r: BitReader) -> None:
    for size_id in range(4):
        for _ in range(0, 6, 3 if size_id == 3 else 1):
            if not r.flag():
                r.ue()
            else:
                coefs = min(64, 1 << (4 + (size_id << 1)))
                if size_id > 1:
                    r.se()
                for _ in range(coefs):
                    r.se()


def _st_ref_pic_set(r: BitReader, idx: int, sets: list[StRps], num_sets: int) -> StRps:
    inter = r.flag() if idx != 0 else False
    if inter:
        delta_idx = r.ue() + 1 if idx == num_sets else 1
        if delta_idx > idx:
            raise CodecError("HEVC st_ref_pic_set predicts from a set that does not exist")
        sign = r.flag()
        delta_rps = (1 - 2 * sign) * (r.ue() + 1)
        ref = sets[idx - delta_idx]
        used_flags: list[bool] = []
        use_delta: list[bool] = []
        for _ in range(ref.num_delta_pocs + 1):
            u = r.flag()
            used_flags.append(u)
            use_delta.append(True if u else r.flag())
        # 7.4.8 (equations 7-61, 7-62)
        neg: list[tuple[int, bool]] = []
        pos: list[tuple[int, bool]] = []
        n_neg = len(ref.neg)
        for j in range(len(ref.pos) - 1, -1, -1):
            d = ref.pos[j][0] + delta_rps
            if d < 0 and use_delta[n_neg + j]:
                neg.append((d, used_flags[n_neg + j]))
        if delta_rps < 0 and use_delta[ref.num_delta_pocs]:
            neg.append((delta_rps, used_flags[ref.num_delta_pocs]))
        for j in range(n_neg):
            d = ref.neg[j][0] + delta_rps
            if d < 0 and use_delta[j]:
                neg.append((d, used_flags[j]))
        for j in range(n_neg - 1, -1, -1):
            d = ref.neg[j][0] + delta_rps
            if d > 0 and use_delta[j]:
                pos.append((d, used_flags[j]))
        if delta_rps > 0 and use_delta[ref.num_delta_pocs]:
            pos.append((delta_rps, used_flags[ref.num_delta_pocs]))
        for j in range(len(ref.pos)):
            d = ref.pos[j][0] + delta_rps
            if d > 0 and use_delta[n_neg + j]:
                pos.append((d, used_flags[n_neg + j]))
        return StRps(tuple(neg), tuple(pos))
    n_neg = r.ue()
    n_pos = r.ue()
    if n_neg > 16 or n_pos > 16:
        raise CodecError("HEVC st_ref_pic_set too large")
    neg = []
    poc = 0
    for _ in range(n_neg):
        poc -= r.ue() + 1
        neg.append((poc, r.flag()))
    pos = []
    poc = 0
    for _ in range(n_pos):
        poc += r.ue() + 1
        pos.append((poc, r.flag()))
    return StRps(tuple(neg), tuple(pos))


def parse_sps(nal: bytes | memoryview) -> HevcSps:
    """Parse an HEVC SPS NAL unit (with its 2-byte header), up to the slice-header fields."""
    rbsp, _ = unescape_prefix(nal, len(nal))
    r = BitReader(rbsp[2:], "HEVC SPS")
    r.skip(4)
    max_sub = r.u(3)
    r.skip(1)
    _profile_tier_level(r, max_sub)
    sps_id = r.ue()
    chroma = r.ue()
    separate = False
    if chroma == 3:
        separate = r.flag()
    width = r.ue()
    height = r.ue()
    shown_w, shown_h = width, height
    if r.flag():  # conformance_window_flag (offsets in chroma sample units)
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        shown_w -= (2 if chroma in (1, 2) else 1) * (left + right)
        shown_h -= (2 if chroma == 1 else 1) * (top + bottom)
    r.ue()
    r.ue()
    log2_poc = r.ue() + 4
    present = r.flag()
    for _ in range(0 if present else max_sub, max_sub + 1):
        r.ue()
        r.ue()
        r.ue()
    log2_min_cb = r.ue() + 3
    log2_ctb = log2_min_cb + r.ue()
    r.ue()
    r.ue()
    r.ue()
    r.ue()
    if r.flag() and r.flag():
        _scaling_list_data(r)
    r.skip(1)  # amp
    sao = r.flag()
    if r.flag():  # pcm
        r.skip(8)
        r.ue()
        r.ue()
        r.skip(1)
    num_sets = r.ue()
    if num_sets > 64 or sps_id > 15 or log2_ctb > 7:
        raise CodecError(f"HEVC SPS {sps_id}: values out of range")
    sets: list[StRps] = []
    for i in range(num_sets):
        sets.append(_st_ref_pic_set(r, i, sets, num_sets))
    lt_present = r.flag()
    lt_used: list[bool] = []
    if lt_present:
        for _ in range(r.ue()):
            r.skip(log2_poc)
            lt_used.append(r.flag())
    tmvp = r.flag()
    ctb = 1 << log2_ctb
    ctbs = (-(-width // ctb)) * (-(-height // ctb))
    return HevcSps(sps_id, 0 if separate else chroma, separate, log2_poc, ctbs, sao, tuple(sets),
                   lt_present, len(lt_used), tuple(lt_used), tmvp, shown_w, shown_h)


def parse_pps(nal: bytes | memoryview) -> HevcPps:
    """Parse an HEVC PPS NAL unit (with its 2-byte header)."""
    rbsp, _ = unescape_prefix(nal, len(nal))
    r = BitReader(rbsp[2:], "HEVC PPS")
    pps_id = r.ue()
    sps_id = r.ue()
    dependent = r.flag()
    output_flag = r.flag()
    extra = r.u(3)
    r.skip(1)
    cabac_init = r.flag()
    l0 = r.ue() + 1
    l1 = r.ue() + 1
    r.se()
    r.skip(1)
    transform_skip = r.flag()
    if r.flag():
        r.ue()
    r.se()
    r.se()
    chroma_offsets = r.flag()
    wp = r.flag()
    wbp = r.flag()
    r.skip(1)
    tiles = r.flag()
    sync = r.flag()
    if tiles:
        cols = r.ue()
        rows = r.ue()
        if not r.flag():
            for _ in range(cols + rows):
                r.ue()
        r.skip(1)
    across = r.flag()
    override = disabled = False
    if r.flag():
        override = r.flag()
        disabled = r.flag()
        if not disabled:
            r.se()
            r.se()
    if r.flag():
        _scaling_list_data(r)
    lists_mod = r.flag()
    r.ue()
    ext = r.flag()
    chroma_list = False
    if r.bits_left and r.flag():
        range_ext = r.flag()
        r.skip(7)
        if range_ext:
            if transform_skip:
                r.ue()
            r.skip(1)
            chroma_list = r.flag()
    if pps_id > 63:
        raise CodecError(f"HEVC PPS id {pps_id} out of range")
    return HevcPps(pps_id, sps_id, dependent, output_flag, extra, cabac_init, l0, l1,
                   chroma_offsets, wp, wbp, tiles, sync, across, override, disabled, lists_mod,
                   ext, chroma_list)


class HevcParamSets(ParamSets[HevcSps, HevcPps]):
    """SPS/PPS by id; in-band parameter sets (hev1) replace earlier ones."""

    __slots__ = ()
    NAL_SPS = NAL_SPS
    NAL_PPS = NAL_PPS
    nal_type = staticmethod(nal_type)
    parse_sps = staticmethod(parse_sps)
    parse_pps = staticmethod(parse_pps)


@dataclass(frozen=True, slots=True)
class HevcConfig:
    nal_length_size: int
    nals: tuple[bytes, ...]

    def param_sets(self) -> HevcParamSets:
        ps = HevcParamSets()
        for n in self.nals:
            ps.add(n)
        return ps


def parse_hvcc(payload: bytes) -> HevcConfig:
    """HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1)."""
    try:
        length_size = (payload[21] & 3) + 1
        arrays = payload[22]
        pos = 23
        nals: list[bytes] = []
        for _ in range(arrays):
            pos += 1
            (count,) = struct.unpack_from(">H", payload, pos)
            pos += 2
            for _ in range(count):
                (n,) = struct.unpack_from(">H", payload, pos)
                pos += 2
                if pos + n > len(payload):
                    raise CodecError("hvcC NAL unit runs past the box")
                nals.append(bytes(payload[pos:pos + n]))
                pos += n
    except (IndexError, struct.error):
        raise CodecError("truncated hvcC") from None
    if length_size == 3:
        raise CodecError("hvcC NAL length size 3 is invalid")
    return HevcConfig(length_size, tuple(nals))


def _pred_weight_table(r: BitReader, sps: HevcSps, l0: int, l1: int, is_b: bool) -> None:
    r.ue()
    if sps.chroma_array_type:
        r.se()
    for n in (l0, l1) if is_b else (l0,):
        luma = [r.flag() for _ in range(n)]
        chroma = [r.flag() for _ in range(n)] if sps.chroma_array_type else [False] * n
        for i in range(n):
            if luma[i]:
                r.se()
                r.se()
            if chroma[i]:
                for _ in range(4):
                    r.se()


def _header_bits(rbsp: bytes, t: int, ps: HevcParamSets) -> int:
    r = BitReader(rbsp, "HEVC slice segment header")
    r.skip(16)
    first = r.flag()
    if 16 <= t <= 23:
        r.skip(1)
    pps_id = r.ue()
    pps = ps.pps.get(pps_id)
    if pps is None:
        raise CodecError(f"HEVC slice refers to unknown PPS {pps_id}")
    sps = ps.sps.get(pps.sps_id)
    if sps is None:
        raise CodecError(f"HEVC PPS {pps_id} refers to unknown SPS {pps.sps_id}")
    dependent = False
    if not first:
        if pps.dependent_slice_segments_enabled:
            dependent = r.flag()
        r.skip((sps.pic_size_in_ctbs - 1).bit_length())
    if not dependent:
        r.skip(pps.num_extra_slice_header_bits)
        slice_type = r.ue()
        if slice_type > 2:
            raise CodecError(f"HEVC slice_type {slice_type}")
        if pps.output_flag_present:
            r.skip(1)
        if sps.separate_colour_plane:
            r.skip(2)
        total_curr = 0
        tmvp = False
        if t not in (19, 20):
            r.skip(sps.log2_max_poc_lsb)
            num_sets = len(sps.rps)
            if not r.flag():
                rps = _st_ref_pic_set(r, num_sets, list(sps.rps), num_sets)
            else:
                idx = r.u((num_sets - 1).bit_length()) if num_sets > 1 else 0
                if idx >= num_sets:
                    raise CodecError("HEVC short_term_ref_pic_set_idx out of range")
                rps = sps.rps[idx]
            total_curr = rps.used
            if sps.long_term_ref_pics_present:
                n_sps = r.ue() if sps.num_long_term_ref_pics_sps else 0
                n_pics = r.ue()
                for i in range(n_sps + n_pics):
                    if i < n_sps:
                        k = sps.num_long_term_ref_pics_sps
                        idx = r.u((k - 1).bit_length()) if k > 1 else 0
                        if idx >= k:
                            raise CodecError("HEVC lt_idx_sps out of range")
                        total_curr += sps.lt_used_by_curr[idx]
                    else:
                        r.skip(sps.log2_max_poc_lsb)
                        total_curr += r.u(1)
                    if r.flag():
                        r.ue()
            if sps.temporal_mvp:
                tmvp = r.flag()
        sao_luma = sao_chroma = False
        if sps.sample_adaptive_offset:
            sao_luma = r.flag()
            if sps.chroma_array_type:
                sao_chroma = r.flag()
        if slice_type in (0, 1):
            is_b = slice_type == 0
            l0, l1 = pps.num_ref_idx_l0_default, pps.num_ref_idx_l1_default
            if r.flag():
                l0 = r.ue() + 1
                if is_b:
                    l1 = r.ue() + 1
            if pps.lists_modification_present and total_curr > 1:
                bits = (total_curr - 1).bit_length()
                if r.flag():
                    r.skip(bits * l0)
                if is_b and r.flag():
                    r.skip(bits * l1)
            if is_b:
                r.skip(1)
            if pps.cabac_init_present:
                r.skip(1)
            if tmvp:
                from_l0 = r.flag() if is_b else True
                if (from_l0 and l0 > 1) or (not from_l0 and l1 > 1):
                    r.ue()
            if (pps.weighted_pred and not is_b) or (pps.weighted_bipred and is_b):
                _pred_weight_table(r, sps, l0, l1, is_b)
            r.ue()
        r.se()
        if pps.slice_chroma_qp_offsets_present:
            r.se()
            r.se()
        if pps.chroma_qp_offset_list_enabled:
            r.skip(1)
        override = r.flag() if pps.deblocking_override_enabled else False
        disabled = pps.pps_deblocking_disabled
        if override:
            disabled = r.flag()
            if not disabled:
                r.se()
                r.se()
        if pps.loop_filter_across_slices and (sao_luma or sao_chroma or not disabled):
            r.skip(1)
    if pps.tiles_enabled or pps.entropy_coding_sync:
        n = r.ue()
        if n:
            size = r.ue() + 1
            if size > 32:
                raise CodecError("HEVC offset_len_minus1 out of range")
            r.skip(n * size)
    if pps.slice_header_extension_present:
        r.skip(8 * r.ue())
    # byte_alignment(): a one bit, then zero bits to the byte boundary
    if not r.flag():
        raise CodecError("HEVC slice header: byte_alignment() bit is not 1")
    return r.pos


def slice_header_size(nal: bytes | memoryview, ps: HevcParamSets) -> int:
    """Bytes (escaped, NAL header included) of an HEVC slice segment header."""
    if len(nal) < 2:
        raise CodecError(f"HEVC NAL unit of {len(nal)} bytes has no complete header")
    t = nal_type(nal[0])
    limit = min(len(nal), 64)
    while True:
        rbsp, epbs = unescape_prefix(nal, limit)
        try:
            bits = _header_bits(rbsp, t, ps)
        except CodecError:
            if limit >= len(nal):
                raise
            limit = min(len(nal), limit * 4)
            continue
        return escaped_length((bits + 7) // 8, epbs)
