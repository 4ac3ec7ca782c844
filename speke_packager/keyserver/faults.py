"""Fault switches: parse ``x-fault`` header values and ``--fault``/``faults=`` specs.

A spec is a comma- or semicolon-separated list of switches, e.g. ``delay=2.5, drop=PSSH``.
The list of switches and their effect is in :mod:`speke_packager.keyserver`'s docstring.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import UsageError

__all__ = ["FAULT_NAMES", "FaultError", "Faults", "parse_faults"]

MAX_DELAY = 120.0

# name -> takes a value?
FAULT_NAMES: dict[str, bool] = {
    "delay": True,
    "status": True,
    "drop": True,
    "empty": True,
    "version": True,
    "layout": True,
    "times": True,
    "wrong-kid": False,
    "bad-mac": False,
    "truncate": False,
    "partial": False,
    "pssh-mismatch": False,
    "plain-key": False,
    "change-scheme": False,
    "change-rules": False,
    "change-content-id": False,
    "no-user-agent": False,
    "reset": False,
    "duplicate-kid": False,
    "swap-periods": False,
}

_ELEMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class FaultError(UsageError):
    """A fault spec names an unknown switch or has a bad value."""


@dataclass(frozen=True, slots=True)
class Faults:
    """The switches in effect for one request (server-wide ones merged with the header's)."""

    delay: float = 0.0
    status: int | None = None
    drop: frozenset[str] = field(default_factory=frozenset)
    empty: frozenset[str] = field(default_factory=frozenset)
    version: str | None = None  # '' = omit the version header
    layout: str | None = None  # 'A' or 'B'
    flags: frozenset[str] = field(default_factory=frozenset)
    times: int | None = None  # server-wide faults: only the first N requests get them

    def has(self, name: str) -> bool:
        return name in self.flags

    def merged(self, other: Faults) -> Faults:
        """``other`` (per request) on top of ``self`` (server-wide)."""
        return Faults(
            delay=other.delay or self.delay,
            status=other.status if other.status is not None else self.status,
            drop=self.drop | other.drop,
            empty=self.empty | other.empty,
            version=other.version if other.version is not None else self.version,
            layout=other.layout or self.layout,
            flags=self.flags | other.flags,
            times=other.times if other.times is not None else self.times,
        )

    def __bool__(self) -> bool:
        return bool(self.delay or self.status is not None or self.drop or self.empty
                    or self.version is not None or self.layout or self.flags)


def _items(specs: Iterable[str]) -> Iterable[tuple[str, str | None]]:
    for spec in specs:
        for part in re.split(r"[,;]", spec):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            yield name.strip().lower(), (value.strip() if sep else None)


def parse_faults(specs: Iterable[str]) -> Faults:
    """Parse fault specs; raises :class:`FaultError` naming the bad switch."""
    delay = 0.0
    status: int | None = None
    drop: set[str] = set()
    empty: set[str] = set()
    version: str | None = None
    layout: str | None = None
    flags: set[str] = set()
    times: int | None = None
    for name, value in _items(specs):
        if name not in FAULT_NAMES:
            raise FaultError(f"unknown fault switch {name!r}")
        if FAULT_NAMES[name] and value is None:
            raise FaultError(f"fault switch {name!r} needs a value ({name}=...)")
        if not FAULT_NAMES[name] and value is not None:
            raise FaultError(f"fault switch {name!r} takes no value")
        if name == "delay":
            try:
                delay = float(value or "")
            except ValueError:
                raise FaultError(f"delay={value!r} is not a number of seconds") from None
            if not 0 <= delay <= MAX_DELAY:
                raise FaultError(f"delay must be between 0 and {MAX_DELAY:g} seconds")
        elif name == "status":
            if not (value or "").isdigit() or not 100 <= int(value or "0") <= 599:
                raise FaultError(f"status={value!r} is not an HTTP status code")
            status = int(value or "0")
        elif name in ("drop", "empty"):
            if not _ELEMENT.match(value or ""):
                raise FaultError(f"{name}={value!r} is not an element name")
            (drop if name == "drop" else empty).add(value or "")
        elif name == "version":
            if value and not re.match(r"^[A-Za-z0-9._-]{1,16}$", value):
                raise FaultError(f"version={value!r} is not a version string")
            version = "" if (value or "").lower() == "none" else value
        elif name == "times":
            if not (value or "").isdigit() or int(value or "0") > 1_000_000:
                raise FaultError(f"times={value!r} is not a request count")
            times = int(value or "0")
        elif name == "layout":
            if (value or "").upper() not in ("A", "B"):
                raise FaultError("layout must be A or B")
            layout = (value or "").upper()
        else:
            flags.add(name)
    return Faults(delay=delay, status=status, drop=frozenset(drop), empty=frozenset(empty),
                  version=version, layout=layout, flags=frozenset(flags), times=times)
