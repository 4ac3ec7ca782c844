"""The result of ``verify``: one :class:`Check` per step, grouped per rendition."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import VerificationError


@dataclass(frozen=True, slots=True)
class Check:
    """One verification step of one rendition."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(slots=True)
class RenditionReport:
    """All checks of one rendition."""

    name: str
    manifest: str
    container: str
    protection: str = ""
    kids: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(name, ok, detail))


@dataclass(slots=True)
class VerifyReport:
    """The result of :func:`verify_package`; :meth:`raise_for_failure` turns it into an error."""

    package: str
    reference: str
    renditions: list[RenditionReport]

    @property
    def ok(self) -> bool:
        return bool(self.renditions) and all(r.ok for r in self.renditions)

    def failed(self) -> list[RenditionReport]:
        return [r for r in self.renditions if not r.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "package": self.package, "reference": self.reference, "ok": self.ok,
            "renditions": [
                {"name": r.name, "manifest": r.manifest, "container": r.container,
                 "protection": r.protection, "kids": r.kids, "ok": r.ok,
                 "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in r.checks]}
                for r in self.renditions
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def raise_for_failure(self) -> None:
        bad = self.failed()
        if bad:
            parts = []
            for r in bad:
                first = next((c for c in r.checks if not c.ok), Check("checks", False, "none ran"))
                parts.append(f"{r.name} ({first.name}: {first.detail})")
            raise VerificationError(f"{len(bad)} of {len(self.renditions)} renditions failed: "
                                    + "; ".join(parts))

