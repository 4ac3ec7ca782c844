"""CPIX documents for SPEKE v1.0 (CPIX 2.0 + speke:), v2.0 (CPIX 2.3) and v2.1 (CPIX 2.4)."""

from __future__ import annotations

from .build import build_request_xml
from .model import CpixDocument, Placeholder, RequestedKey
from .parse import parse_cpix
from .schema import schema_errors, validate_schema

__all__ = [
    "CpixDocument",
    "Placeholder",
    "RequestedKey",
    "build_request_xml",
    "parse_cpix",
    "schema_errors",
    "validate_schema",
]
