"""HEVC parameter sets (ITU-T H.265 7.3.2.2 SPS, 7.3.2.3 PPS): the fields the slice segment
header needs, read with the generic :class:`~.bits.BitReader` (parameter sets are rare; the
per-slice parser is in :mod:`.hevc`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import CodecError
from .bits import BitReader, unescape_prefix

__all__ = [
    "NAL_PPS",
    "NAL_SPS",
    "NAL_VPS",
    "HevcPps",
    "HevcSps",
    "StRps",
    "is_vcl",
    "nal_type",
    "parse_pps",
    "parse_sps",
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
