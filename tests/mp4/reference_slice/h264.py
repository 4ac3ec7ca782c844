"""H.264 parameter sets and slice-header length (ITU-T H.264 7.3.2.1, 7.3.2.2, 7.3.3).

Only what the slice header needs is kept. :func:`slice_header_size` returns the header length in
escaped bytes, counted from the first byte of the NAL unit (NAL header included).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from speke_packager.errors import CodecError

from .bits import BitReader, escaped_length, unescape_prefix
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


class H264ParamSets(ParamSets[Sps, Pps]):
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


def _pred_weight_table(r: BitReader, sps: Sps, l0: int, l1: int, is_b: bool) -> None:
    r.ue()
    if sps.chroma_array_type:
        r.ue()
    for n in (l0, l1) if is_b else (l0,):
        for _ in range(n):
            if r.flag():
                r.se()
                r.se()
            if sps.chroma_array_type and r.flag():
                r.se()
                r.se()
                r.se()
                r.se()


def _ref_pic_list_modification(r: BitReader, lists: int) -> None:
    for _ in range(lists):
        if r.flag():
            for _ in range(1000):
                idc = r.ue()
                if idc == 3:
                    break
                if idc > 5:
                    raise CodecError(f"H.264 modification_of_pic_nums_idc {idc}")
                r.ue()
            else:
                raise CodecError("H.264 ref_pic_list_modification does not end")


def _dec_ref_pic_marking(r: BitReader, idr: bool) -> None:
    if idr:
        r.skip(2)
        return
    if r.flag():
        for _ in range(1000):
            op = r.ue()
            if op == 0:
                return
            if op > 6:
                raise CodecError(f"H.264 memory_management_control_operation {op}")
            if op in (1, 3):
                r.ue()
            if op == 2:
                r.ue()
            if op in (3, 6):
                r.ue()
            if op == 4:
                r.ue()
        raise CodecError("H.264 dec_ref_pic_marking does not end")


def _header_bits(rbsp: bytes, nal_unit_type: int, nal_ref_idc: int, ps: H264ParamSets) -> int:
    r = BitReader(rbsp, "H.264 slice header")
    r.skip(8)  # NAL header
    r.ue()  # first_mb_in_slice
    slice_type = r.ue() % 5
    pps_id = r.ue()
    pps = ps.pps.get(pps_id)
    if pps is None:
        raise CodecError(f"H.264 slice refers to unknown PPS {pps_id}")
    sps = ps.sps.get(pps.sps_id)
    if sps is None:
        raise CodecError(f"H.264 PPS {pps_id} refers to unknown SPS {pps.sps_id}")
    if slice_type > 4:
        raise CodecError(f"H.264 slice_type {slice_type}")
    is_b = slice_type == 1
    is_p = slice_type in (0, 3)
    if sps.separate_colour_plane:
        r.skip(2)
    r.skip(sps.log2_max_frame_num)
    field_pic = False
    if not sps.frame_mbs_only:
        field_pic = r.flag()
        if field_pic:
            r.skip(1)
    idr = nal_unit_type == NAL_IDR
    if idr:
        r.ue()
    if sps.poc_type == 0:
        r.skip(sps.log2_max_poc_lsb)
        if pps.bottom_field_pic_order_in_frame_present and not field_pic:
            r.se()
    elif sps.poc_type == 1 and not sps.delta_pic_order_always_zero:
        r.se()
        if pps.bottom_field_pic_order_in_frame_present and not field_pic:
            r.se()
    if pps.redundant_pic_cnt_present:
        r.ue()
    if is_b:
        r.skip(1)
    l0, l1 = pps.num_ref_idx_l0_default, pps.num_ref_idx_l1_default
    if is_p or is_b:
        if r.flag():
            l0 = r.ue() + 1
            if is_b:
                l1 = r.ue() + 1
    if slice_type not in (2, 4):
        _ref_pic_list_modification(r, 2 if is_b else 1)
    if (pps.weighted_pred and is_p) or (pps.weighted_bipred_idc == 1 and is_b):
        _pred_weight_table(r, sps, l0, l1, is_b)
    if nal_ref_idc:
        _dec_ref_pic_marking(r, idr)
    if pps.entropy_coding_mode and slice_type not in (2, 4):
        r.ue()
    r.se()  # slice_qp_delta
    if slice_type in (3, 4):
        if slice_type == 3:
            r.skip(1)
        r.se()
    if pps.deblocking_filter_control_present and r.ue() != 1:
        r.se()
        r.se()
    if pps.num_slice_groups > 1 and pps.slice_group_map_type in (3, 4, 5):
        units = sps.pic_size_in_map_units
        n = -(-units // pps.slice_group_change_rate) + 1
        r.skip((n - 1).bit_length())
    return r.pos


def slice_header_size(nal: bytes | memoryview, ps: H264ParamSets) -> int:
    """Bytes (escaped, NAL header included) of a VCL NAL unit's slice header, rounded up."""
    if not nal:
        raise CodecError("empty NAL unit")
    nal_unit_type = nal_type(nal[0])
    ref_idc = (nal[0] >> 5) & 3
    limit = min(len(nal), 32)
    while True:
        rbsp, epbs = unescape_prefix(nal, limit)
        try:
            bits = _header_bits(rbsp, nal_unit_type, ref_idc, ps)
        except CodecError:
            if limit >= len(nal):
                raise
            limit = min(len(nal), limit * 4)
            continue
        return escaped_length((bits + 7) // 8, epbs)
