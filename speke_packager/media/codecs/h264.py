"""H.264 parameter sets and slice-header length (ITU-T H.264 7.3.2.1, 7.3.2.2, 7.3.3).

Only what the slice header needs is kept. :func:`slice_header_size` returns the header length in
escaped bytes, counted from the first byte of the NAL unit (NAL header included).

SPS/PPS use the generic :class:`~.bits.BitReader`. The slice header runs for every slice (cbcs),
so it has its own parser: the prefix as one integer, the position in a local, ``ue(v)`` codes by
16-bit look-up tables (two or three fields at once where they usually fit), and the PPS/SPS
fields it needs flattened once per PPS (a "plan"). Its results and error types equal the
generic reader's on the whole NAL unit (tests/mp4/test_slice_header_speed.py keeps the first
implementation as the oracle).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

from ...errors import CodecError
from .bits import (
    H264_DEBLOCK_LEN,
    H264_FIRST3_LEN,
    H264_FIRST3_PPS,
    H264_FIRST3_TYPE,
    UE16_LEN,
    UE16_LEN2,
    UE16_VAL,
    BitReader,
    escaped_length,
    skip_ue,
    ue_long,
    unescape_prefix,
)
from .paramsets import ParamSets

__all__ = [
    "AvcConfig",
    "H264ParamSets",
    "Pps",
    "Sps",
    "nal_type",
    "parse_avcc",
    "parse_pps",
    "parse_sps",
    "slice_header_size",
]

NAL_SLICE = 1
NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
VCL_TYPES = frozenset({1, 2, 3, 4, 5})

_EPB = b"\x00\x00\x03"
_FIRST = 8  # escaped bytes of a slice NAL parsed first

_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


@dataclass(frozen=True, slots=True)
class Sps:
    sps_id: int
    chroma_array_type: int
    separate_colour_plane: bool
    log2_max_frame_num: int
    poc_type: int
    log2_max_poc_lsb: int
    delta_pic_order_always_zero: bool
    frame_mbs_only: bool
    pic_size_in_map_units: int
    width: int = 0  # luma samples after the frame cropping window
    height: int = 0


@dataclass(frozen=True, slots=True)
class Pps:
    pps_id: int
    sps_id: int
    entropy_coding_mode: bool
    bottom_field_pic_order_in_frame_present: bool
    num_slice_groups: int
    slice_group_map_type: int
    slice_group_change_rate: int
    num_ref_idx_l0_default: int
    num_ref_idx_l1_default: int
    weighted_pred: bool
    weighted_bipred_idc: int
    deblocking_filter_control_present: bool
    redundant_pic_cnt_present: bool


def nal_type(first_byte: int) -> int:
    return first_byte & 0x1F


def _scaling_list(r: BitReader, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + r.se() + 256) % 256
        last = nxt or last


def parse_sps(nal: bytes | memoryview) -> Sps:
    """Parse an SPS NAL unit (with its 1-byte header)."""
    rbsp, _ = unescape_prefix(nal, len(nal))
    r = BitReader(rbsp[1:], "H.264 SPS")
    profile = r.u(8)
    r.skip(16)
    sps_id = r.ue()
    chroma_format_idc = 1
    separate = False
    if profile in _HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc == 3:
            separate = r.flag()
        r.ue()
        r.ue()
        r.skip(1)
        if r.flag():
            for i in range(12 if chroma_format_idc == 3 else 8):
                if r.flag():
                    _scaling_list(r, 16 if i < 6 else 64)
    log2_max_frame_num = r.ue() + 4
    poc_type = r.ue()
    log2_max_poc_lsb = 0
    always_zero = False
    if poc_type == 0:
        log2_max_poc_lsb = r.ue() + 4
    elif poc_type == 1:
        always_zero = r.flag()
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.skip(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.flag()
    if sps_id > 31 or log2_max_frame_num > 16 or poc_type > 2:
        raise CodecError(f"H.264 SPS {sps_id}: values out of range")
    if not frame_mbs_only:
        r.skip(1)  # mb_adaptive_frame_field_flag
    r.skip(1)  # direct_8x8_inference_flag
    width, height = 16 * width_mbs, 16 * (2 - frame_mbs_only) * height_map_units
    if r.flag():  # frame_cropping_flag (7.4.2.1.1: crop units from the chroma format)
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        chroma = 0 if separate else chroma_format_idc
        crop_x = 1 if chroma == 0 else (2 if chroma in (1, 2) else 1)
        crop_y = (1 if chroma == 0 else (2 if chroma == 1 else 1)) * (2 - frame_mbs_only)
        width -= crop_x * (left + right)
        height -= crop_y * (top + bottom)
    return Sps(sps_id, 0 if separate else chroma_format_idc, separate, log2_max_frame_num,
               poc_type, log2_max_poc_lsb, always_zero, frame_mbs_only,
               width_mbs * height_map_units, width, height)


def parse_pps(nal: bytes | memoryview) -> Pps:
    """Parse a PPS NAL unit (with its 1-byte header), up to the fields slice headers need."""
    rbsp, _ = unescape_prefix(nal, len(nal))
    r = BitReader(rbsp[1:], "H.264 PPS")
    pps_id = r.ue()
    sps_id = r.ue()
    entropy = r.flag()
    bottom = r.flag()
    groups = r.ue() + 1
    map_type = 0
    change_rate = 1
    if groups > 1:
        map_type = r.ue()
        if map_type == 0:
            for _ in range(groups):
                r.ue()
        elif map_type == 2:
            for _ in range(groups - 1):
                r.ue()
                r.ue()
        elif map_type in (3, 4, 5):
            r.skip(1)
            change_rate = r.ue() + 1
        elif map_type == 6:
            n = r.ue() + 1
            r.skip(n * max(1, (groups - 1).bit_length()))
    l0 = r.ue() + 1
    l1 = r.ue() + 1
    weighted_pred = r.flag()
    bipred = r.u(2)
    r.se()
    r.se()
    r.se()
    deblocking = r.flag()
    r.skip(1)
    redundant = r.flag()
    if pps_id > 255:
        raise CodecError(f"H.264 PPS id {pps_id} out of range")
    return Pps(pps_id, sps_id, entropy, bottom, groups, map_type, change_rate, l0, l1,
               weighted_pred, bipred, deblocking, redundant)


class H264ParamSets(ParamSets[Sps, Pps, "_Plan"]):
    """SPS/PPS by id; in-band parameter sets (avc3) replace earlier ones."""

    __slots__ = ()
    NAL_SPS = NAL_SPS
    NAL_PPS = NAL_PPS
    nal_type = staticmethod(nal_type)
    parse_sps = staticmethod(parse_sps)
    parse_pps = staticmethod(parse_pps)


@dataclass(frozen=True, slots=True)
class AvcConfig:
    nal_length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]

    def param_sets(self) -> H264ParamSets:
        ps = H264ParamSets()
        for n in (*self.sps, *self.pps):
            ps.add(n)
        return ps


def parse_avcc(payload: bytes) -> AvcConfig:
    """AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1)."""
    try:
        if payload[0] != 1:
            raise CodecError(f"avcC configurationVersion {payload[0]} is not 1")
        length_size = (payload[4] & 3) + 1
        pos = 5
        lists: list[list[bytes]] = []
        for mask in (0x1F, 0xFF):
            count = payload[pos] & mask
            pos += 1
            items = []
            for _ in range(count):
                (n,) = struct.unpack_from(">H", payload, pos)
                pos += 2
                if pos + n > len(payload):
                    raise CodecError("avcC parameter set runs past the box")
                items.append(bytes(payload[pos:pos + n]))
                pos += n
            lists.append(items)
    except (IndexError, struct.error):
        raise CodecError("truncated avcC") from None
    if length_size == 3:
        raise CodecError("avcC NAL length size 3 is invalid")
    return AvcConfig(length_size, tuple(lists[0]), tuple(lists[1]))


class _Plan(NamedTuple):
    """What a slice header needs from its PPS and SPS, flattened (one per PPS id;
    :class:`H264ParamSets` drops them when a parameter set changes)."""

    fixed_bits: int  # frame_num + pic_order_cnt_lsb when nothing else comes between, else 0
    chroma: bool  # ChromaArrayType != 0
    frame_bits: int  # colour_plane_id + frame_num
    frame_mbs_only: bool
    poc_type: int
    poc_lsb_bits: int
    bottom_poc: bool  # bottom_field_pic_order_in_frame_present_flag
    delta_always_zero: bool
    redundant: bool
    l0_default: int
    l1_default: int
    weighted_pred: bool
    weighted_bipred_idc: int
    cabac: bool
    deblocking: bool
    tail_bits: int  # slice_group_change_cycle


def _plan(ps: H264ParamSets, pps_id: int) -> _Plan:
    pps = ps.pps.get(pps_id)
    if pps is None:
        raise CodecError(f"H.264 slice refers to unknown PPS {pps_id}")
    sps = ps.sps.get(pps.sps_id)
    if sps is None:
        raise CodecError(f"H.264 PPS {pps_id} refers to unknown SPS {pps.sps_id}")
    tail = 0
    if pps.num_slice_groups > 1 and pps.slice_group_map_type in (3, 4, 5):
        units = sps.pic_size_in_map_units
        n = -(-units // pps.slice_group_change_rate) + 1
        tail = (n - 1).bit_length()
    frame_bits = 2 * sps.separate_colour_plane + sps.log2_max_frame_num
    fixed = (sps.frame_mbs_only and sps.poc_type == 0
             and not pps.bottom_field_pic_order_in_frame_present
             and not pps.redundant_pic_cnt_present)
    plan = _Plan(frame_bits + sps.log2_max_poc_lsb if fixed else 0, sps.chroma_array_type != 0,
                 frame_bits, sps.frame_mbs_only, sps.poc_type, sps.log2_max_poc_lsb,
                 pps.bottom_field_pic_order_in_frame_present, sps.delta_pic_order_always_zero,
                 pps.redundant_pic_cnt_present, pps.num_ref_idx_l0_default,
                 pps.num_ref_idx_l1_default, pps.weighted_pred, pps.weighted_bipred_idc,
                 pps.entropy_coding_mode, pps.deblocking_filter_control_present, tail)
    return ps.remember(pps_id, plan)


# The slice-header parser keeps the RBSP prefix as one integer ``val`` followed by 16 zero bits,
# and the bit position as ``q``, the number of real bits left: a field of n bits is ``q -= n``, a
# flag ``q -= 1`` and ``(val >> q) & 0x10000``, and the 16 bits after the position are
# ``(val >> q) & 0xFFFF``, by which a ue(v) code of up to 16 bits is looked up (UE16_LEN,
# UE16_VAL); longer ones go through ue_long. Reading past the end: ``q`` goes negative for good;
# the next read shifts by a negative count, which raises ValueError, or the parse ends with
# ``q < 0``. Either way the header does not fit in the bytes parsed.
_WHAT = "H.264 slice header"


def _modifications(val: int, q: int) -> int:
    """ref_pic_list_modification() of one list after its flag (= 1)."""
    ue_len, ue_val = UE16_LEN, UE16_VAL
    for _ in range(1000):
        p = (val >> q) & 0xFFFF
        c = ue_len[p]
        if c:
            q -= c
            idc = ue_val[p]
        else:
            q, idc = ue_long(val, q, _WHAT)
        if idc == 3:
            return q
        if idc > 5:
            raise CodecError(f"H.264 modification_of_pic_nums_idc {idc}")
        # abs_diff_pic_num_minus1 / long_term_pic_num ue(v)
        c = ue_len[(val >> q) & 0xFFFF]
        q = q - c if c else ue_long(val, q, _WHAT)[0]
    raise CodecError("H.264 ref_pic_list_modification does not end")


def _pred_weight_table(val: int, q: int, chroma: bool, refs: int) -> int:
    """pred_weight_table() (7.3.3.2) over ``refs`` entries (l0, or l0 + l1 for B)."""
    two = UE16_LEN2
    # luma_log2_weight_denom [, chroma_log2_weight_denom] ue(v)
    c = (two if chroma else UE16_LEN)[(val >> q) & 0xFFFF]
    q = q - c if c else skip_ue(val, q, 2 if chroma else 1, _WHAT)
    for _ in range(refs):  # every entry reads a flag: a wrong count runs out of bits soon
        q -= 1
        if (val >> q) & 0x10000:  # luma_weight_flag: luma weight, offset se(v)
            c = two[(val >> q) & 0xFFFF]
            q = q - c if c else skip_ue(val, q, 2, _WHAT)
        if chroma:
            q -= 1
            if (val >> q) & 0x10000:  # chroma_weight_flag: 2 x (weight, offset) se(v)
                c = two[(val >> q) & 0xFFFF]
                q = q - c if c else skip_ue(val, q, 2, _WHAT)
                c = two[(val >> q) & 0xFFFF]
                q = q - c if c else skip_ue(val, q, 2, _WHAT)
    return q


def _mmco(val: int, q: int) -> int:
    """The memory_management_control_operation loop (adaptive_ref_pic_marking_mode_flag = 1)."""
    ue_len, ue_val = UE16_LEN, UE16_VAL
    for _ in range(1000):
        p = (val >> q) & 0xFFFF
        c = ue_len[p]
        if c:
            q -= c
            op = ue_val[p]
        else:
            q, op = ue_long(val, q, _WHAT)
        if op == 0:
            return q
        if op > 6:
            raise CodecError(f"H.264 memory_management_control_operation {op}")
        if op == 3:  # difference_of_pic_nums_minus1, long_term_frame_idx ue(v)
            c = UE16_LEN2[(val >> q) & 0xFFFF]
            q = q - c if c else skip_ue(val, q, 2, _WHAT)
        elif op != 5:  # the one ue(v) argument of operations 1, 2, 4 and 6
            c = ue_len[(val >> q) & 0xFFFF]
            q = q - c if c else ue_long(val, q, _WHAT)[0]
    raise CodecError("H.264 dec_ref_pic_marking does not end")


def slice_header_size(nal: bytes | bytearray | memoryview, ps: H264ParamSets, start: int = 0,
                      end: int | None = None) -> int:
    """Bytes (escaped, NAL header included) of the slice header of the VCL NAL unit
    ``nal[start:end]``, rounded up.

    Parses the first 32 bytes; a header that does not fit (or fails) is parsed again from 4x as
    many, up to the whole NAL unit, so the result and any error are those of the whole unit.
    The prefix is unescaped only when it holds a ``00 00 03``."""
    if end is None:
        end = len(nal)
    n = end - start
    if n <= 0:
        raise CodecError("empty NAL unit")
    b0 = nal[start]
    limit = n if n < _FIRST else _FIRST
    ue_len, ue_val = UE16_LEN, UE16_VAL
    while True:
        raw = bytes(nal[start:start + limit])
        epbs: list[int] | None = None
        if _EPB in raw:
            raw, epbs = unescape_prefix(raw, limit)
        val = int.from_bytes(raw) << 16  # big-endian
        q = 8 * len(raw) - 8  # after the NAL header
        try:
            # first_mb_in_slice, slice_type, pic_parameter_set_id ue(v): one look-up when the
            # three codes fit in 16 bits
            p = (val >> q) & 0xFFFF
            c = H264_FIRST3_LEN[p]
            if c:
                q -= c
                slice_type = H264_FIRST3_TYPE[p]
                pps_id = H264_FIRST3_PPS[p]
            else:
                c = ue_len[p]
                q = q - c if c else ue_long(val, q, _WHAT)[0]
                p = (val >> q) & 0xFFFF
                c = ue_len[p]
                if c:
                    q -= c
                    slice_type = ue_val[p] % 5
                else:
                    q, slice_type = ue_long(val, q, _WHAT)
                    slice_type %= 5
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
            (fixed_bits, chroma, frame_bits, frame_mbs_only, poc_type, poc_lsb_bits, bottom_poc,
             delta_always_zero, redundant, l0, l1, weighted_pred, bipred_idc, cabac, deblocking,
             tail_bits) = plan
            idr = b0 & 0x1F == 5  # NAL_IDR
            if fixed_bits and not idr:  # frame_num, pic_order_cnt_lsb: fixed widths
                q -= fixed_bits
            else:
                q -= frame_bits  # colour_plane_id u(2), frame_num u(v)
                field_pic = False
                if not frame_mbs_only:
                    q -= 1
                    if (val >> q) & 0x10000:  # field_pic_flag
                        field_pic = True
                        q -= 1  # bottom_field_flag
                if idr:  # idr_pic_id ue(v)
                    c = ue_len[(val >> q) & 0xFFFF]
                    q = q - c if c else ue_long(val, q, _WHAT)[0]
                if poc_type == 0:
                    q -= poc_lsb_bits  # pic_order_cnt_lsb u(v)
                    if bottom_poc and not field_pic:  # delta_pic_order_cnt_bottom se(v)
                        c = ue_len[(val >> q) & 0xFFFF]
                        q = q - c if c else ue_long(val, q, _WHAT)[0]
                elif poc_type == 1 and not delta_always_zero:  # delta_pic_order_cnt[0..1]
                    q = skip_ue(val, q, 2 if bottom_poc and not field_pic else 1, _WHAT)
                if redundant:  # redundant_pic_cnt ue(v)
                    c = ue_len[(val >> q) & 0xFFFF]
                    q = q - c if c else ue_long(val, q, _WHAT)[0]
            is_b = slice_type == 1
            intra = slice_type in {2, 4}
            if not intra:
                q -= 2 if is_b else 1  # [direct_spatial_mv_pred_flag]
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
                q -= 1
                if (val >> q) & 0x10000:  # ref_pic_list_modification_flag_l0
                    q = _modifications(val, q)
                if is_b:
                    q -= 1
                    if (val >> q) & 0x10000:  # ref_pic_list_modification_flag_l1
                        q = _modifications(val, q)
                    if bipred_idc == 1:
                        q = _pred_weight_table(val, q, chroma, l0 + l1)
                elif weighted_pred:
                    q = _pred_weight_table(val, q, chroma, l0)
            if b0 & 0x60:  # nal_ref_idc: dec_ref_pic_marking()
                if idr:
                    q -= 2  # no_output_of_prior_pics_flag, long_term_reference_flag
                else:
                    q -= 1
                    if (val >> q) & 0x10000:  # adaptive_ref_pic_marking_mode_flag
                        q = _mmco(val, q)
            if cabac and not intra:  # cabac_init_idc ue(v), slice_qp_delta se(v)
                c = UE16_LEN2[(val >> q) & 0xFFFF]
                q = q - c if c else skip_ue(val, q, 2, _WHAT)
            else:  # slice_qp_delta se(v)
                c = ue_len[(val >> q) & 0xFFFF]
                q = q - c if c else ue_long(val, q, _WHAT)[0]
            if slice_type >= 3:  # SP: sp_for_switch_flag; SP/SI: slice_qs_delta se(v)
                if slice_type == 3:
                    q -= 1
                c = ue_len[(val >> q) & 0xFFFF]
                q = q - c if c else ue_long(val, q, _WHAT)[0]
            if deblocking:  # disable_deblocking_filter_idc ue(v)
                p = (val >> q) & 0xFFFF
                c = H264_DEBLOCK_LEN[p]
                if c:  # with the offsets unless idc = 1, in one look-up
                    q -= c
                else:
                    c = ue_len[p]
                    if c:
                        q -= c
                        idc = ue_val[p]
                    else:
                        q, idc = ue_long(val, q, _WHAT)
                    if idc != 1:  # slice_alpha_c0_offset_div2, slice_beta_offset_div2 se(v)
                        q = skip_ue(val, q, 2, _WHAT)
            q -= tail_bits  # slice_group_change_cycle u(v)
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
            raise CodecError(f"H.264 slice header: truncated (runs past the {n}-byte NAL unit)")
        limit = min(n, limit * 4)
