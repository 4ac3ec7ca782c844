"""A typed face for :class:`lxml.builder.ElementMaker` (lxml-stubs has no ``lxml.builder``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, cast

from lxml import etree

__all__ = ["Maker"]

_builder: Any = importlib.import_module("lxml.builder")


class Maker:
    """``Maker(ns, nsmap).Tag(*children, attr=value)`` -> ``etree._Element``."""

    def __init__(self, namespace: str | None = None,
                 nsmap: Mapping[Any, str] | None = None) -> None:
        self._maker = _builder.ElementMaker(namespace=namespace, nsmap=dict(nsmap or {}))

    def __call__(self, tag: str, *children: Any, **attrs: str) -> etree._Element:
        return cast(etree._Element, self._maker(tag, *children, **attrs))

    def __getattr__(self, tag: str) -> Callable[..., etree._Element]:
        if tag.startswith("_"):
            raise AttributeError(tag)
        return lambda *children, **attrs: self(tag, *children, **attrs)
