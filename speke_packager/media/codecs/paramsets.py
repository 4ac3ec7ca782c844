"""SPS/PPS tables shared by the H.264 and HEVC parsers.

Parameter sets are kept by id; in-band ones (avc3, hev1) replace earlier ones. Parse results are
cached by NAL bytes, because in-band parameter sets repeat at every IDR (so a repeated set is the
same object, and the per-PPS plans are dropped only on a real change)."""

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
L = TypeVar("L")  # what a slice-header parser derives per PPS (its "plan")

_CACHE = 64  # distinct parameter-set NALs remembered per table
_PLANS = 256  # per-PPS plans kept at most (PPS ids are < 256)


class ParamSets(Generic[S, P, L]):
    """SPS/PPS by id. Subclasses name the NAL types and the parse functions.

    ``plans`` caches per PPS id what a slice-header parser derived from the PPS and its SPS;
    :meth:`add` drops them whenever it changes a parameter set (change ``sps``/``pps`` through
    :meth:`add` only)."""

    __slots__ = ("_parsed_pps", "_parsed_sps", "plans", "pps", "sps")
    NAL_SPS: ClassVar[int]
    NAL_PPS: ClassVar[int]

    def __init__(self) -> None:
        self.sps: dict[int, S] = {}
        self.pps: dict[int, P] = {}
        self._parsed_sps: dict[bytes, S] = {}
        self._parsed_pps: dict[bytes, P] = {}
        self.plans: dict[int, L] = {}

    @staticmethod
    def nal_type(first_byte: int) -> int:
        raise NotImplementedError

    @staticmethod
    def parse_sps(nal: bytes) -> S:
        raise NotImplementedError

    @staticmethod
    def parse_pps(nal: bytes) -> P:
        raise NotImplementedError

    def remember(self, pps_id: int, plan: L) -> L:
        """Keep ``plan`` for ``pps_id`` (the table stays bounded); returns it."""
        if len(self.plans) >= _PLANS:
            self.plans.clear()
        self.plans[pps_id] = plan
        return plan

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
                self.plans.clear()
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
                self.plans.clear()
