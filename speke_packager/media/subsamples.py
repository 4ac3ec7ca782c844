"""Which bytes of a sample are protected: (codec, scheme) -> ``[(clear, protected), ...]``.

Deciding the map is separate from encrypting it (media-encryption.md §5-§7):

* H.264 / HEVC: per length-prefixed NAL unit. Non-VCL NAL units are clear and merge into the next
  subsample's clear count. ``cenc``: clear = length + NAL header, protected = the rest rounded
  down to 16 bytes (the 1-15 leftover joins the *leading* clear part). ``cbcs``: clear = length +
  NAL header + slice header (parsed from SPS/PPS), protected = the rest, not rounded.
* VP9: per frame of a superframe: uncompressed header clear, the rest protected rounded down to
  16 bytes (leftover joins the clear part); the superframe index is clear.
* Audio: ``None`` = whole sample (cenc) / whole blocks (cbcs), no subsamples.

A :class:`SubsampleMapper` is immutable and picklable; :meth:`SubsampleMapper.session` returns
the per-segment state (in-band parameter sets, VP9 reference sizes).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ..constants import Scheme
from ..errors import CodecError, UnsupportedMediaError
from .codecs import h264, hevc, vp9

__all__ = ["CodecFamily", "MapSession", "SubsampleMapper", "Subsamples", "split_clear"]

Subsamples = list[tuple[int, int]]

_MAX_CLEAR = 0xFFFF
_LENGTH_FIELDS = {n: struct.Struct(f">{c}").unpack_from for n, c in ((1, "B"), (2, "H"), (4, "I"))}


class CodecFamily(enum.Enum):
    H264 = "h264"
    HEVC = "hevc"
    VP9 = "vp9"
    AUDIO = "audio"  # whole-sample encryption (AAC, AC-3, E-AC-3, Opus)


def split_clear(clear: int, protected: int, out: Subsamples) -> None:
    """Append ``(clear, protected)``, splitting clear runs over 65535 into ``(65535, 0)``."""
    while clear > _MAX_CLEAR:
        out.append((_MAX_CLEAR, 0))
        clear -= _MAX_CLEAR
    out.append((clear, protected))


@dataclass(frozen=True, slots=True)
class SubsampleMapper:
    """Subsample rules for one track.

    ``param_nals`` are the parameter sets of the decoder configuration (avcC/hvcC) without length
    fields; ``width``/``height`` seed VP9 frame sizes."""

    family: CodecFamily
    scheme: Scheme
    nal_length_size: int = 4
    param_nals: tuple[bytes, ...] = ()
    width: int = 0
    height: int = 0

    def __post_init__(self) -> None:
        if self.scheme not in (Scheme.CENC, Scheme.CBCS):
            raise UnsupportedMediaError(f"scheme {self.scheme.value} is not an ISO CENC scheme")

    def session(self) -> MapSession:
        """Fresh per-segment state; sessions never share mutable data."""
        return MapSession(self)


class MapSession:
    """Computes subsample maps for consecutive samples of one track (one segment)."""

    __slots__ = ("_avc", "_hevc", "_ls", "_nal", "_unpack", "_vp9", "m")

    def __init__(self, mapper: SubsampleMapper) -> None:
        self.m = mapper
        self._avc: h264.H264ParamSets | None = None
        self._hevc: hevc.HevcParamSets | None = None
        self._vp9: vp9.Vp9State | None = None
        self._nal = mapper.family in (CodecFamily.H264, CodecFamily.HEVC)
        self._ls = mapper.nal_length_size
        self._unpack = _LENGTH_FIELDS.get(self._ls)
        if mapper.scheme is Scheme.CBCS:
            if mapper.family is CodecFamily.H264:
                self._avc = h264.H264ParamSets()
                for n in mapper.param_nals:
                    self._avc.add(n)
            elif mapper.family is CodecFamily.HEVC:
                self._hevc = hevc.HevcParamSets()
                for n in mapper.param_nals:
                    self._hevc.add(n)
        if mapper.family is CodecFamily.VP9:
            self._vp9 = vp9.Vp9State(mapper.width, mapper.height)

    def map(self, sample: bytes | bytearray | memoryview) -> Subsamples | None:
        """Subsamples of ``sample`` (sizes add up to its length), or None for whole-sample."""
        if not self._nal:
            return None if self._vp9 is None else self._map_vp9(sample)
        # H.264 / HEVC: the length-prefixed NAL units (nal.iter_length_prefixed, inlined)
        ls = self._ls
        unpack = self._unpack
        if unpack is None:
            raise CodecError(f"unsupported NAL length size {ls}")
        avc = self._avc
        hvc = self._hevc
        is_hevc = self.m.family is CodecFamily.HEVC
        hdr_len = 2 if is_hevc else 1
        out: Subsamples = []
        clear = 0
        n = len(sample)
        pos = 0
        while pos < n:
            if pos + ls > n:
                raise CodecError(f"truncated NAL length field at offset {pos}")
            (size,) = unpack(sample, pos)
            off = pos + ls  # the NAL header
            pos = off + size
            if pos > n:
                raise CodecError(f"NAL of {size} bytes at offset {off - ls} runs past the end of "
                                 f"the sample ({n} bytes)")
            if size < hdr_len:
                clear += ls + size
                continue
            if is_hevc:
                t = (sample[off] >> 1) & 0x3F
                if t >= 32:  # non-VCL
                    if hvc is not None and t in (hevc.NAL_SPS, hevc.NAL_PPS):
                        hvc.add(sample[off:pos])
                    clear += ls + size
                    continue
                if hvc is not None:
                    protected = size - hevc.slice_header_size(sample, hvc, off, pos)
                else:
                    protected = (size - 2) & ~15
            else:
                t = sample[off] & 0x1F
                if not 1 <= t <= 5:  # non-VCL (h264.VCL_TYPES)
                    if avc is not None and t in (h264.NAL_SPS, h264.NAL_PPS):
                        avc.add(sample[off:pos])
                    clear += ls + size
                    continue
                if avc is not None:
                    if t in (2, 3, 4):
                        raise UnsupportedMediaError(
                            "H.264 data partitioning (NAL types 2-4) is not supported with cbcs")
                    protected = size - h264.slice_header_size(sample, avc, off, pos)
                else:
                    protected = (size - 1) & ~15
            if protected <= 0:
                clear += ls + size
                continue
            clear += ls + size - protected
            if clear > _MAX_CLEAR:
                split_clear(clear, protected, out)
            else:
                out.append((clear, protected))
            clear = 0
        if clear or not out:
            split_clear(clear, 0, out)
        return out

    def _map_vp9(self, sample: bytes | bytearray | memoryview) -> Subsamples:
        assert self._vp9 is not None
        mv = memoryview(sample)
        frames, index_size = vp9.split_superframe(mv)
        out: Subsamples = []
        clear = 0
        for off, size in frames:
            if size == 0:
                continue
            head = vp9.uncompressed_header_size(mv[off:off + size], self._vp9)
            protected = (size - head) & ~15
            if protected <= 0:
                clear += size
                continue
            split_clear(clear + size - protected, protected, out)
            clear = 0
        clear += index_size
        if clear or not out:
            split_clear(clear, 0, out)
        total = sum(c + p for c, p in out)
        if total != len(mv):
            raise CodecError(f"VP9 subsamples cover {total} of {len(mv)} bytes")
        return out
