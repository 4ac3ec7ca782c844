"""Encryptor-side SPEKE conformance: real requests to a key server, every answer checked.

``run_conformance(SpekeClient(url), ConformanceOptions(...))`` sends the battery (v1 single key,
v2 per packaging and DRM, presets, key periods, encrypted keys, refusals, repeats) and returns a
:class:`ConformanceReport` of (check, version, outcome, reason, hint). Checks are plain functions
in :data:`REGISTRY`; add your own with :func:`register_check`::

    @register_check("my-vendor-header", hint="send X-Vendor-Trace")
    def my_check(ctx: RunContext, version: SpekeVersion) -> str | None:
        for ex in ctx.answers(version):
            if ex.header("x-vendor-trace") is None:
                raise CheckFailed(f"{ex.check}: no X-Vendor-Trace header")
        return None
"""

from __future__ import annotations

from .model import (
    REGISTRY,
    Check,
    CheckFailed,
    CheckResult,
    CheckSkipped,
    CheckWarning,
    ConformanceReport,
    Exchange,
    NotSupported,
    Outcome,
    register_check,
)
from .output import junit_xml, render_table
from .runner import ConformanceOptions, RunContext, ephemeral_delivery_key, run_conformance

__all__ = [
    "REGISTRY",
    "Check",
    "CheckFailed",
    "CheckResult",
    "CheckSkipped",
    "CheckWarning",
    "ConformanceOptions",
    "ConformanceReport",
    "Exchange",
    "NotSupported",
    "Outcome",
    "RunContext",
    "ephemeral_delivery_key",
    "junit_xml",
    "register_check",
    "render_table",
    "run_conformance",
]

from . import answers, battery, negative  # noqa: F401  (register the built-in checks)
