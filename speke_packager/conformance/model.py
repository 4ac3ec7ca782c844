"""Values of a conformance run: outcomes, results, recorded exchanges, the report, the registry.

A check is a function ``fn(ctx, version) -> str | None`` registered with :func:`register_check`.
It passes by returning (optionally a note), and reports anything else by raising
:class:`CheckFailed`, :class:`CheckWarning`, :class:`NotSupported` or :class:`CheckSkipped`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..constants import SpekeVersion

if TYPE_CHECKING:
    from ..keys.cpix.model import CpixDocument
    from ..keys.request import SpekeRequest
    from ..model import KeySet

__all__ = [
    "ALL_VERSIONS",
    "REGISTRY",
    "V2_VERSIONS",
    "Check",
    "CheckFailed",
    "CheckFn",
    "CheckResult",
    "CheckSkipped",
    "CheckWarning",
    "ConformanceReport",
    "Exchange",
    "NotSupported",
    "Outcome",
    "register_check",
]

ALL_VERSIONS = frozenset(SpekeVersion)
V2_VERSIONS = frozenset({SpekeVersion.V2_0, SpekeVersion.V2_1})


class Outcome(enum.Enum):
    PASS = "pass"  # noqa: S105  (an outcome, not a password)
    FAIL = "fail"
    WARN = "warn"
    NOT_SUPPORTED = "not supported"
    SKIPPED = "skipped"


class CheckFailed(Exception):
    """The key server's answer breaks the rule the check tests."""

    def __init__(self, reason: str, hint: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


class CheckWarning(CheckFailed):
    """Not a failure, but worth telling the vendor."""


class NotSupported(Exception):
    """The server does not speak this SPEKE version (a v1-only server, no v2.1)."""


class CheckSkipped(Exception):
    """Nothing to check with the chosen options (e.g. no DASH DRM was selected)."""


CheckFn = Callable[[Any, SpekeVersion], "str | None"]
"""A check: ``fn(ctx, version)`` with ``ctx`` a :class:`.runner.RunContext` (typed ``Any``
here: the runner imports this module, and no two modules import each other)."""


@dataclass(frozen=True)
class Check:
    """A registered check. ``kind``: 'request' checks send requests (in registration order),
    'answer' checks then examine every answer of the version."""

    name: str
    fn: CheckFn
    kind: str
    versions: frozenset[SpekeVersion]
    required: bool
    hint: str
    title: str


REGISTRY: dict[str, Check] = {}


def register_check(name: str, *, kind: str = "answer",
                   versions: frozenset[SpekeVersion] = ALL_VERSIONS, required: bool = True,
                   hint: str = "", title: str = "") -> Callable[[CheckFn], CheckFn]:
    """Decorator adding ``fn`` to :data:`REGISTRY` under ``name`` (a later registration of the
    same name replaces it, so users can override a built-in check)."""
    if kind not in ("request", "answer"):
        raise ValueError("kind must be 'request' or 'answer'")

    def deco(fn: CheckFn) -> CheckFn:
        REGISTRY[name] = Check(name=name, fn=fn, kind=kind, versions=versions,
                               required=required, hint=hint,
                               title=title or (fn.__doc__ or name).strip().splitlines()[0])
        return fn

    return deco


@dataclass
class Exchange:
    """One request of the battery and what came back (raw and interpreted)."""

    check: str
    version: SpekeVersion
    request: SpekeRequest
    seconds: float = 0.0
    status: int | None = None  # None: no HTTP answer (connection error, timeout)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str | None = None  # transport or HTTP error text (the server's own message)
    doc: CpixDocument | None = None  # parsed answer (200 only)
    parse_error: str | None = None
    keyset: KeySet | None = None  # strict validation passed
    validation_error: str | None = None
    validation_check: str | None = None  # the failed rule (version-echo, pssh, ...)
    keys: dict[str, bytes] = field(default_factory=dict, repr=False)  # kid -> key (secret)
    negative: bool = False  # a request that must be refused

    @property
    def answered(self) -> bool:
        return self.status == 200 and self.doc is not None

    def header(self, name: str) -> str | None:
        low = name.lower()
        for k, v in self.headers.items():
            if k.lower() == low:
                return v
        return None


@dataclass
class CheckResult:
    check: str
    version: str
    outcome: Outcome
    reason: str = ""
    hint: str = ""
    required: bool = True
    seconds: float = 0.0
    title: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAIL and self.required

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "version": self.version, "result": self.outcome.value,
                "required": self.required, "reason": self.reason, "hint": self.hint,
                "seconds": round(self.seconds, 3), "title": self.title}


@dataclass
class ConformanceReport:
    url: str
    versions: tuple[str, ...]
    results: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Every required check passed (not supported / skipped / warnings do not fail)."""
        return not any(r.failed for r in self.results)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def counts(self) -> dict[str, int]:
        out = {o.value: 0 for o in Outcome}
        for r in self.results:
            out[r.outcome.value] += 1
        return out

    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.failed]

    def result(self, check: str, version: str) -> CheckResult | None:
        for r in self.results:
            if r.check == check and r.version == version:
                return r
        return None

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "versions": list(self.versions), "passed": self.passed,
                "counts": self.counts(), "seconds": round(self.seconds, 3),
                "results": [r.to_json() for r in self.results]}
