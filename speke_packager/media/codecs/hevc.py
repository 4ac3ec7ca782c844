"""HEVC: hvcC, the parameter-set store and the slice-segment-header length (ITU-T H.265 7.3.6;
SPS/PPS parsing is in :mod:`.hevc_params`).

:func:`slice_header_size` returns the length in escaped bytes from the first byte of the NAL unit
(2-byte NAL header included) to the end of ``byte_alignment()``.

As for H.264 (see h264.py), the slice segment header has its own parser over one integer with
``ue(v)`` look-up tables and a per-PPS plan; a short-term RPS in the slice header is only
counted (NumPicTotalCurr), not built. Long-term pictures use the generic BitReader.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

from ...errors import CodecError
from .bits import (
    UE16_LEN,
    UE16_LEN2,
    UE16_VAL,
    BitReader,
    escaped_length,
    skip_ue,
    ue_long,
    unescape_prefix,
)
from .hevc_params import (
    NAL_PPS,
    NAL_SPS,
    NAL_VPS,
    HevcPps,
    HevcSps,
    StRps,
    is_vcl,
    nal_type,
    parse_pps,
    parse_sps,
)
from .paramsets import ParamSets

# The parameter-set types and parsers live in hevc_params.py; they are re-exported here so
# ``hevc`` stays the one module a caller needs for HEVC.
__all__ = [
    "NAL_PPS",
    "NAL_SPS",
    "NAL_VPS",
    "HevcConfig",
    "HevcParamSets",
    "HevcPps",
    "HevcSps",
    "StRps",
    "is_vcl",
    "nal_type",
    "parse_hvcc",
    "parse_pps",
    "parse_sps",
    "slice_header_size",
]

_EPB = b"\x00\x00\x03"
_FIRST = 32  # escaped bytes of a slice NAL parsed first

class HevcParamSets(ParamSets[HevcSps, HevcPps, "_Plan"]):
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


class _Plan(NamedTuple):
    """What a slice segment header needs from its PPS and SPS, flattened (one per PPS id;
    :class:`HevcParamSets` drops them when a parameter set changes)."""

    sps: HevcSps
    dependent_enabled: bool  # dependent_slice_segments_enabled_flag
    address_bits: int  # slice_segment_address u(v)
    extra_bits: int  # num_extra_slice_header_bits
    type_tail_bits: int  # pic_output_flag + colour_plane_id
    poc_bits: int
    num_sets: int
    set_bits: int  # short_term_ref_pic_set_idx u(v)
    used: tuple[int, ...]  # NumPicTotalCurr contribution of each SPS short-term set
    deltas: tuple[tuple[int, ...], ...]  # per SPS set: its delta POCs (S0, S1) and a final 0
    long_term: bool
    temporal_mvp: bool
    sao: bool
    chroma: bool  # ChromaArrayType != 0
    l0_default: int
    l1_default: int
    lists_modification: bool
    cabac_init: bool
    weighted_pred: bool
    weighted_bipred: bool
    chroma_qp_offsets: bool
    chroma_qp_offset_list: bool
    deblocking_override: bool
    deblocking_disabled: bool
    loop_filter_across_slices: bool
    entry_points: bool  # tiles or entropy_coding_sync
    extension: bool


def _plan(ps: HevcParamSets, pps_id: int) -> _Plan:
    pps = ps.pps.get(pps_id)
    if pps is None:
        raise CodecError(f"HEVC slice refers to unknown PPS {pps_id}")
    sps = ps.sps.get(pps.sps_id)
    if sps is None:
        raise CodecError(f"HEVC PPS {pps_id} refers to unknown SPS {pps.sps_id}")
    num_sets = len(sps.rps)
    plan = _Plan(sps, pps.dependent_slice_segments_enabled, (sps.pic_size_in_ctbs - 1).bit_length(),
                 pps.num_extra_slice_header_bits,
                 pps.output_flag_present + 2 * sps.separate_colour_plane, sps.log2_max_poc_lsb,
                 num_sets, (num_sets - 1).bit_length() if num_sets > 1 else 0,
                 tuple(rps.used for rps in sps.rps),
                 tuple((*(d for d, _ in rps.neg), *(d for d, _ in rps.pos), 0) for rps in sps.rps),
                 sps.long_term_ref_pics_present,
                 sps.temporal_mvp, sps.sample_adaptive_offset, sps.chroma_array_type != 0,
                 pps.num_ref_idx_l0_default, pps.num_ref_idx_l1_default,
                 pps.lists_modification_present, pps.cabac_init_present, pps.weighted_pred,
                 pps.weighted_bipred, pps.slice_chroma_qp_offsets_present,
                 pps.chroma_qp_offset_list_enabled, pps.deblocking_override_enabled,
                 pps.pps_deblocking_disabled, pps.loop_filter_across_slices,
                 pps.tiles_enabled or pps.entropy_coding_sync, pps.slice_header_extension_present)
    return ps.remember(pps_id, plan)


# The slice-header parser keeps the RBSP prefix as one integer ``val`` followed by 16 zero bits,
# and the bit position as ``q``, the number of real bits left: a field of n bits is ``q -= n``, a
# flag ``q -= 1`` and ``(val >> q) & 0x10000``, and the 16 bits after the position are
# ``(val >> q) & 0xFFFF``, by which a ue(v) code of up to 16 bits is looked up (UE16_LEN,
# UE16_VAL); longer ones go through ue_long. Reading past the end: ``q`` goes negative for good;
# the next read shifts by a negative count, which raises ValueError, or the parse ends with
# ``q < 0``. Either way the header does not fit in the bytes parsed. The rare parts (a short-term
# RPS in the slice header, long-term pictures) use the generic BitReader.

_WHAT = "HEVC slice segment header"


def _reader(val: int, q: int) -> BitReader:
    """The generic reader over the ``q`` real bits left."""
    return BitReader.at((val >> 16) & ((1 << q) - 1), q, 0, _WHAT)


def _slice_rps(val: int, q: int, deltas: tuple[tuple[int, ...], ...]) -> tuple[int, int]:
    """st_ref_pic_set(num_short_term_ref_pic_sets) in a slice header (7.3.7): ``(q, number of
    pictures used by the current one)``. ``deltas`` are the SPS sets' delta POCs."""
    ue_len, ue_val = UE16_LEN, UE16_VAL
    num_sets = len(deltas)
    used = 0
    inter = 0
    if num_sets:
        q -= 1
        inter = (val >> q) & 0x10000  # inter_ref_pic_set_prediction_flag
    if inter:
        p = (val >> q) & 0xFFFF  # delta_idx_minus1 ue(v)
        c = ue_len[p]
        if c:
            q -= c
            delta_idx = ue_val[p] + 1
        else:
            q, delta_idx = ue_long(val, q, _WHAT)
            delta_idx += 1
        if delta_idx > num_sets:
            raise CodecError("HEVC st_ref_pic_set predicts from a set that does not exist")
        q -= 1
        sign = (val >> q) & 0x10000  # delta_rps_sign
        p = (val >> q) & 0xFFFF  # abs_delta_rps_minus1 ue(v)
        c = ue_len[p]
        if c:
            q -= c
            delta_rps = ue_val[p] + 1
        else:
            q, delta_rps = ue_long(val, q, _WHAT)
            delta_rps += 1
        if sign:
            delta_rps = -delta_rps
        # per picture of the reference set and the set's own delta (7-61, 7-62): a picture
        # stays (in S0 or S1) unless its new delta is 0 or use_delta_flag is 0
        for d in deltas[num_sets - delta_idx]:
            q -= 1
            if (val >> q) & 0x10000:  # used_by_curr_pic_flag (use_delta_flag inferred 1)
                if d != -delta_rps:
                    used += 1
            else:
                q -= 1  # use_delta_flag
        return q, used
    # num_negative_pics, num_positive_pics ue(v)
    p = (val >> q) & 0xFFFF
    c = ue_len[p]
    if c:
        q -= c
        n_neg = ue_val[p]
    else:
        q, n_neg = ue_long(val, q, _WHAT)
    p = (val >> q) & 0xFFFF
    c = ue_len[p]
    if c:
        q -= c
        n_pos = ue_val[p]
    else:
        q, n_pos = ue_long(val, q, _WHAT)
    if n_neg > 16 or n_pos > 16:
        raise CodecError("HEVC st_ref_pic_set too large")
    for _ in range(n_neg + n_pos):  # delta_poc_sX_minus1 ue(v), used_by_curr_pic_sX_flag
        c = ue_len[(val >> q) & 0xFFFF]
        q = (q - c if c else ue_long(val, q, _WHAT)[0]) - 1
        if (val >> q) & 0x10000:
            used += 1
    return q, used


def _long_term(r: BitReader, sps: HevcSps) -> int:
    """The long-term picture part of the slice header; returns its NumPicTotalCurr share."""
    total = 0
    n_sps = r.ue() if sps.num_long_term_ref_pics_sps else 0
    n_pics = r.ue()
    for i in range(n_sps + n_pics):
        if i < n_sps:
            k = sps.num_long_term_ref_pics_sps
            idx = r.u((k - 1).bit_length()) if k > 1 else 0
            if idx >= k:
                raise CodecError("HEVC lt_idx_sps out of range")
            total += sps.lt_used_by_curr[idx]
        else:
            r.skip(sps.log2_max_poc_lsb)
            total += r.u(1)
        if r.flag():
            r.ue()
    return total


def _pred_weight_table(val: int, q: int, chroma: bool, counts: tuple[int, ...]) -> int:
    """pred_weight_table() (7.3.6.3) for lists of ``counts`` entries; returns the new ``q``."""
    two = UE16_LEN2
    # luma_log2_weight_denom ue(v) [, delta_chroma_log2_weight_denom se(v)]
    c = (two if chroma else UE16_LEN)[(val >> q) & 0xFFFF]
    q = q - c if c else skip_ue(val, q, 2 if chroma else 1, _WHAT)
    for n in counts:
        if n > q + 16:  # at least one flag per entry: cannot fit
            return -1
        q -= n
        luma = (val >> (q + 16)) & ((1 << n) - 1)  # luma_weight_lX_flag[0..n-1], MSB first
        cflags = 0
        if chroma:
            if n > q + 16:
                return -1
            q -= n
            cflags = (val >> (q + 16)) & ((1 << n) - 1)
        for i in range(n - 1, -1, -1):
            if (luma >> i) & 1:  # delta_luma_weight, luma_offset se(v)
                c = two[(val >> q) & 0xFFFF]
                q = q - c if c else skip_ue(val, q, 2, _WHAT)
            if (cflags >> i) & 1:  # 2 x (delta_chroma_weight, delta_chroma_offset) se(v)
                c = two[(val >> q) & 0xFFFF]
                q = q - c if c else skip_ue(val, q, 2, _WHAT)
                c = two[(val >> q) & 0xFFFF]
                q = q - c if c else skip_ue(val, q, 2, _WHAT)
    return q


def slice_header_size(nal: bytes | bytearray | memoryview, ps: HevcParamSets, start: int = 0,
                      end: int | None = None) -> int:
    """Bytes (escaped, NAL header included) of the slice segment header of the NAL unit
    ``nal[start:end]``, up to the end of ``byte_alignment()``.

    Parses the first 32 bytes; a header that does not fit (or fails) is parsed again from 4x as
    many, up to the whole NAL unit, so the result and any error are those of the whole unit.
    The prefix is unescaped only when it holds a ``00 00 03``."""
    if end is None:
        end = len(nal)
    n = end - start
    if n < 2:
        raise CodecError(f"HEVC NAL unit of {max(n, 0)} bytes has no complete header")
    t = (nal[start] >> 1) & 0x3F
    limit = n if n < _FIRST else _FIRST
    ue_len, ue_val = UE16_LEN, UE16_VAL
    while True:
        raw = bytes(nal[start:start + limit])
        epbs: list[int] | None = None
        if _EPB in raw:
            raw, epbs = unescape_prefix(raw, limit)
        val = int.from_bytes(raw) << 16  # big-endian
        q = 8 * len(raw) - 17  # after the NAL header and first_slice_segment_in_pic_flag
        try:
            first = (val >> q) & 0x10000
            if 16 <= t <= 23:
                q -= 1  # no_output_of_prior_pics_flag
            # slice_pic_parameter_set_id ue(v)
            p = (val >> q) & 0xFFFF
            c = ue_len[p]
            if c:
                q -= c
                pps_id = ue_val[p]
            else:
                q, pps_id = ue_long(val, q, _WHAT)
            plan = ps.plans.get(pps_id)
            if plan is None:
                plan = _plan(ps, pps_id)
            (sps, dependent_enabled, address_bits, extra_bits, type_tail_bits, poc_bits,
             num_sets, set_bits, used, deltas, long_term, temporal_mvp, sao, chroma, l0, l1,
             lists_modification, cabac_init, weighted_pred, weighted_bipred, chroma_qp_offsets,
             chroma_qp_offset_list, deblocking_override, deblocking_disabled, across_slices,
             entry_points, extension) = plan
            dependent = 0
            if not first:
                if dependent_enabled:
                    q -= 1
                    dependent = (val >> q) & 0x10000  # dependent_slice_segment_flag
                q -= address_bits  # slice_segment_address u(v)
            if not dependent:
                q -= extra_bits  # slice_reserved_flag[i]
                # slice_type ue(v)
                p = (val >> q) & 0xFFFF
                c = ue_len[p]
                if c:
                    q -= c
                    slice_type = ue_val[p]
                else:
                    q, slice_type = ue_long(val, q, _WHAT)
                if slice_type > 2:
                    raise CodecError(f"HEVC slice_type {slice_type}")
                q -= type_tail_bits  # pic_output_flag, colour_plane_id
                total_curr = 0
                tmvp = 0
                if t not in {19, 20}:  # not IDR
                    q -= poc_bits + 1  # slice_pic_order_cnt_lsb, short_term_ref_pic_set_sps_flag
                    if not (val >> q) & 0x10000:  # st_ref_pic_set(num_short_term_ref_pic_sets)
                        q, total_curr = _slice_rps(val, q, deltas)
                    else:
                        idx = 0
                        if set_bits:  # short_term_ref_pic_set_idx u(v)
                            q -= set_bits
                            idx = (val >> (q + 16)) & ((1 << set_bits) - 1)
                        if idx >= num_sets:
                            raise CodecError("HEVC short_term_ref_pic_set_idx out of range")
                        total_curr = used[idx]
                    if long_term:
                        rd = _reader(val, q)
                        total_curr += _long_term(rd, sps)
                        q -= rd.pos
                    if temporal_mvp:
                        q -= 1
                        tmvp = (val >> q) & 0x10000  # slice_temporal_mvp_enabled_flag
                sao_any = 0
                if sao:  # slice_sao_luma_flag [, slice_sao_chroma_flag]
                    q -= 1
                    sao_any = (val >> q) & 0x10000
                    if chroma:
                        q -= 1
                        sao_any |= (val >> q) & 0x10000
                if slice_type != 2:
                    is_b = slice_type == 0
                    q -= 1
                    if (val >> q) & 0x10000:  # num_ref_idx_active_override_flag
                        p = (val >> q) & 0xFFFF
                        c = ue_len[p]
                        if c:
                            q -= c
                            l0 = ue_val[p] + 1
                        else:
                            q, l0 = ue_long(val, q, _WHAT)
                            l0 += 1
                        if is_b:
                            p = (val >> q) & 0xFFFF
                            c = ue_len[p]
                            if c:
                                q -= c
                                l1 = ue_val[p] + 1
                            else:
                                q, l1 = ue_long(val, q, _WHAT)
                                l1 += 1
                    if lists_modification and total_curr > 1:  # ref_pic_lists_modification()
                        bits = (total_curr - 1).bit_length()
                        q -= 1
                        if (val >> q) & 0x10000:
                            q -= bits * l0
                        if is_b:
                            q -= 1
                            if (val >> q) & 0x10000:
                                q -= bits * l1
                    if is_b:
                        q -= 1  # mvd_l1_zero_flag
                    if cabac_init:
                        q -= 1  # cabac_init_flag
                    if tmvp:
                        from_l0 = True
                        if is_b:
                            q -= 1
                            from_l0 = bool((val >> q) & 0x10000)  # collocated_from_l0_flag
                        if (l0 if from_l0 else l1) > 1:  # collocated_ref_idx ue(v)
                            c = ue_len[(val >> q) & 0xFFFF]
                            q = q - c if c else ue_long(val, q, _WHAT)[0]
                    if weighted_bipred if is_b else weighted_pred:
                        q = _pred_weight_table(val, q, chroma, (l0, l1) if is_b else (l0,))
                    # five_minus_max_num_merge_cand ue(v)
                    c = ue_len[(val >> q) & 0xFFFF]
                    q = q - c if c else ue_long(val, q, _WHAT)[0]
                # slice_qp_delta se(v) [, slice_cb_qp_offset, slice_cr_qp_offset se(v)]
                c = ue_len[(val >> q) & 0xFFFF]
                q = q - c if c else ue_long(val, q, _WHAT)[0]
                if chroma_qp_offsets:
                    c = UE16_LEN2[(val >> q) & 0xFFFF]
                    q = q - c if c else skip_ue(val, q, 2, _WHAT)
                if chroma_qp_offset_list:
                    q -= 1  # cu_chroma_qp_offset_enabled_flag
                disabled = deblocking_disabled
                if deblocking_override:
                    q -= 1
                    if (val >> q) & 0x10000:  # deblocking_filter_override_flag
                        q -= 1
                        disabled = bool((val >> q) & 0x10000)  # slice_deblocking_filter_disabled
                        if not disabled:  # slice_beta_offset_div2, slice_tc_offset_div2 se(v)
                            c = UE16_LEN2[(val >> q) & 0xFFFF]
                            q = q - c if c else skip_ue(val, q, 2, _WHAT)
                if across_slices and (sao_any or not disabled):
                    q -= 1  # slice_loop_filter_across_slices_enabled_flag
            if entry_points:  # num_entry_point_offsets ue(v)
                p = (val >> q) & 0xFFFF
                c = ue_len[p]
                if c:
                    q -= c
                    count = ue_val[p]
                else:
                    q, count = ue_long(val, q, _WHAT)
                if count:  # offset_len_minus1 ue(v), then entry_point_offset_minus1[i] u(v)
                    p = (val >> q) & 0xFFFF
                    c = ue_len[p]
                    if c:
                        q -= c
                        size = ue_val[p] + 1
                    else:
                        q, size = ue_long(val, q, _WHAT)
                        size += 1
                    if size > 32:
                        raise CodecError("HEVC offset_len_minus1 out of range")
                    q -= count * size
            if extension:  # slice_segment_header_extension_length ue(v), then the bytes
                p = (val >> q) & 0xFFFF
                c = ue_len[p]
                if c:
                    q -= c + 8 * ue_val[p]
                else:
                    q, length = ue_long(val, q, _WHAT)
                    q -= 8 * length
            # byte_alignment(): a one bit, then zero bits to the byte boundary
            q -= 1
            if not (val >> q) & 0x10000:
                raise CodecError("HEVC slice header: byte_alignment() bit is not 1")
        except ValueError:  # a shift by a negative count: a read past the end of ``raw``
            q = -1
        except CodecError:
            if limit >= n:
                raise
            q = -1
        if q >= 0:
            size = len(raw) - (q >> 3)  # ceil((8 * len(raw) - q) / 8)
            return size if epbs is None else escaped_length(size, epbs)
        if limit >= n:
            raise CodecError(f"{_WHAT}: truncated (runs past the {n}-byte NAL unit)")
        limit = min(n, limit * 4)
