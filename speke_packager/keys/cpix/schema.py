"""XSD validation of CPIX documents against the shipped DASH-IF schemas (lxml)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from lxml import etree

from ..._xml import parse_xml
from ...errors import CpixError

__all__ = ["SCHEMA_DIR", "schema_errors", "validate_schema"]

SCHEMA_DIR = Path(__file__).resolve().parent.parent.parent / "schemas" / "cpix"


@functools.lru_cache(maxsize=4)
def _schema(cpix_version: str) -> etree.XMLSchema:
    path = SCHEMA_DIR / cpix_version / "cpix.xsd"
    if not path.is_file():
        raise CpixError(f"no shipped XSD for CPIX {cpix_version}")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    doc = etree.parse(str(path), parser)  # local, trusted file; imports resolve beside it
    return etree.XMLSchema(doc)


def schema_errors(data: bytes, cpix_version: str = "2.3") -> list[str]:
    """XSD violations of ``data`` (empty list: valid) as ``line N: message`` strings."""
    root = parse_xml(data, what="CPIX document")
    schema = _schema(cpix_version)
    if schema.validate(etree.ElementTree(root)):
        return []
    entries: Any = schema.error_log  # lxml-stubs lacks the iterable protocol
    return [f"line {e.line}: {e.message}" for e in entries] or ["document does not validate"]


def validate_schema(data: bytes, cpix_version: str = "2.3") -> None:
    """Raise :class:`CpixError` naming the first XSD violation."""
    errors = schema_errors(data, cpix_version)
    if errors:
        raise CpixError(f"CPIX document is not valid against the CPIX {cpix_version} XSD: "
                        f"{errors[0]}")
