"""Where :func:`~.vod.encrypt_vod` gets its keys, with the rules checked before anything runs.

- :class:`RawKeys`: content keys given by the user (``[video=|audio=|all=]KID:KEY``); they can
  only be signalled as W3C ClearKey (``drm=(DrmSystem.CLEARKEY,)``) or not at all.
- :class:`SpekeKeys`: a SPEKE key server; ``encrypt_vod`` asks it for the packaging its output
  format and scheme need (the contract's own ``packaging`` and ``scheme`` are replaced).

``encrypt_vod`` refuses, with one-line :class:`~speke_packager.errors.UsageError` messages that
name the command-line options, a DRM system the output format cannot signal with the scheme
(:func:`.protection.check_drms`) before it writes anything. A plain :class:`KeySet` or any
callable :class:`~.options.KeySource` is taken as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..constants import DrmSystem, Packaging, Scheme
from ..errors import UsageError
from ..model import KeySet
from .options import OutputFormat
from .protection import check_drms
from .rawkeys import raw_keyset

# The SPEKE client (requests, lxml) is only named here: raw keys never load it.
if TYPE_CHECKING:
    from ..keys.client import SpekeClient
    from ..keys.request import EncryptionContract

__all__ = ["RawKeys", "SpekeKeys", "vod_packaging"]

_TS_SCHEMES = (Scheme.AES_128, Scheme.SAMPLE_AES)


def vod_packaging(fmt: OutputFormat, scheme: Scheme) -> tuple[Packaging, ...]:
    """The SPEKE packaging a VOD output needs: HLS MPEG-TS for AES-128 / SAMPLE-AES, else DASH
    and/or HLS fMP4 as ``fmt`` says."""
    if scheme in _TS_SCHEMES:
        return (Packaging.HLS_TS,)
    out: list[Packaging] = []
    if fmt.dash:
        out.append(Packaging.DASH)
    if fmt.hls:
        out.append(Packaging.HLS_FMP4)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class RawKeys:
    """Content keys given by the user, one ``[video=|audio=|all=]KID:KEY`` spec each (the
    ``--key`` syntax; :func:`.rawkeys.read_key_file` reads a key file into specs). ``drm``:
    empty (no DRM signaling) or ``(DrmSystem.CLEARKEY,)`` (W3C ClearKey tags and descriptors);
    any other DRM system needs a key server. The specs are checked when the value is made;
    errors never repeat a key."""

    keys: tuple[str, ...]
    drm: tuple[DrmSystem, ...] = ()
    content_id: str = "raw"

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))
        object.__setattr__(self, "drm", tuple(self.drm))
        raw_keyset(self.keys, Scheme.CBCS)  # syntax, duplicates, labels (the scheme is not used)
        others = set(self.drm) - {DrmSystem.CLEARKEY}
        if others:
            names = ", ".join(sorted(d.label for d in others))
            raise UsageError(f"--drm {names} needs a key server (--speke-url): raw keys can "
                             "only be signalled as ClearKey (--drm clearkey)")

    def __repr__(self) -> str:
        return f"RawKeys({len(self.keys)} keys, drm={[d.label for d in self.drm]})"

    def check(self, fmt: OutputFormat, scheme: Scheme) -> None:
        """Refuse DRM signaling ``fmt`` cannot carry with ``scheme``."""
        check_drms(self.drm, fmt, scheme)

    def __call__(self, scheme: Scheme) -> KeySet:
        return raw_keyset(self.keys, scheme, content_id=self.content_id,
                          clearkey=bool(self.drm))


@dataclass(frozen=True, slots=True)
class SpekeKeys:
    """Keys from a SPEKE key server for one VOD package: ``contract`` with the packaging and
    scheme of the output (see :func:`vod_packaging`). Key rotation (``contract.period``) is for
    live (:class:`~.live.SpekeKeySource`)."""

    client: SpekeClient
    contract: EncryptionContract

    def __post_init__(self) -> None:
        if self.contract.period is not None:
            raise UsageError("--key-periods (key rotation) is for live; encrypt-vod uses one "
                             "key per track type")

    def contract_for(self, fmt: OutputFormat, scheme: Scheme) -> EncryptionContract:
        """The contract sent for an output in ``fmt`` with ``scheme``."""
        return replace(self.contract, packaging=vod_packaging(fmt, scheme), scheme=scheme)

    def check(self, fmt: OutputFormat, scheme: Scheme) -> None:
        """Refuse a DRM system ``fmt`` cannot signal with ``scheme``."""
        check_drms(self.contract.drm, fmt, scheme)

    def fetch(self, fmt: OutputFormat, scheme: Scheme) -> KeySet:
        return self.client.fetch(self.contract_for(fmt, scheme))

