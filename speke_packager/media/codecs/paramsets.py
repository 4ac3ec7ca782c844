"""SPS/PPS tables shared by the H.264 and HEVC parsers.

Parameter sets are kept by id; in-band ones (avc3, hev1) replace earlier ones. Parse results are
cached by NAL bytes, because in-band parameter sets repeat at every IDR (so a repeated set is the
same object, and :meth:`ParamSets.changed` only runs for a real change)."""

from __future__ import annotations

from typing import ClassVar, Generic, Protocol, Self, TypeVar

from ...errors import CodecError


class _Sps(Protocol):
    @property
    def sps_id(self) -> int: ...


class _Pps(Protocol):
    @property
    def pps_id(self) -> int: ...


S = TypeVar("S", bound=_Sps)
P = TypeVar("P", bound=_Pps)

_CACHE = 64  # distinct parameter-set NALs remembered per table


class ParamSets(Generic[S, P]):
    """SPS/PPS by id. Subclasses name the NAL types and the parse functions."""

    __slots__ = ("_parsed_pps", "_parsed_sps", "pps", "sps")
    NAL_SPS: ClassVar[int]
    NAL_PPS: ClassVar[int]

    def __init__(self) -> None:
        self.sps: dict[int, S] = {}
        self.pps: dict[int, P] = {}
        self._parsed_sps: dict[bytes, S] = {}
        self._parsed_pps: dict[bytes, P] = {}

    @staticmethod
    def nal_type(first_byte: int) -> int:
        raise NotImplementedError

    @staticmethod
    def parse_sps(nal: bytes) -> S:
        raise NotImplementedError

    @staticmethod
    def parse_pps(nal: bytes) -> P:
        raise NotImplementedError

    def changed(self) -> None:
        """Called after :meth:`add` stored a different SPS or PPS: subclasses drop what they
        derived from the tables (change ``sps``/``pps`` through :meth:`add` only)."""

    def copy(self) -> Self:
        new = type(self)()
        new.sps = dict(self.sps)
        new.pps = dict(self.pps)
        new._parsed_sps = dict(self._parsed_sps)
        new._parsed_pps = dict(self._parsed_pps)
        return new

    def add(self, nal: bytes | bytearray | memoryview) -> None:
        """Take an SPS or PPS NAL unit (anything else is ignored)."""
        if not nal:
            raise CodecError("empty NAL unit")
        t = self.nal_type(nal[0])
        if t == self.NAL_SPS:
            raw = bytes(nal)
            sps = self._parsed_sps.get(raw)
            if sps is None:
                sps = self.parse_sps(raw)
                if len(self._parsed_sps) >= _CACHE:
                    self._parsed_sps.clear()
                self._parsed_sps[raw] = sps
            if self.sps.get(sps.sps_id) is not sps:
                self.sps[sps.sps_id] = sps
                self.changed()
        elif t == self.NAL_PPS:
            raw = bytes(nal)
            pps = self._parsed_pps.get(raw)
            if pps is None:
                pps = self.parse_pps(raw)
                if len(self._parsed_pps) >= _CACHE:
                    self._parsed_pps.clear()
                self._parsed_pps[raw] = pps
            if self.pps.get(pps.pps_id) is not pps:
                self.pps[pps.pps_id] = pps
                self.changed()
