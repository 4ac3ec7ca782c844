"""Fixtures for the fMP4 encryption tests: clear assets split into init + media segments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.mp4.helpers import split


@dataclass(frozen=True)
class Asset:
    path: Path
    init: bytes
    segments: list[bytes]


@pytest.fixture(scope="session")
def asset(media: Callable[[str], Path]) -> Callable[[str], Asset]:
    """``asset("h264-aac-fmp4")`` -> the clear file, its init and its moof+mdat segments."""
    cache: dict[str, Asset] = {}

    def get(name: str) -> Asset:
        if name not in cache:
            path = media(name)
            init, segs = split(path.read_bytes())
            assert len(segs) >= 3, f"{name}: fewer than three fragments"
            cache[name] = Asset(path, init, segs)
        return cache[name]

    return get
