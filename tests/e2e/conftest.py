"""One headless system Chromium per session; packages built once per session."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from speke_packager.errors import ToolError
from speke_packager.verify.serve import Browser, find_node_modules


@pytest.fixture(scope="session")
def browser(playwright_instance: Any) -> Iterator[Browser]:
    try:
        find_node_modules()
        b = Browser(playwright=playwright_instance)
    except ToolError as exc:
        if os.environ.get("CI"):
            raise  # CI installs Chromium and the npm players: missing means broken set-up
        pytest.skip(str(exc))
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="session")
def clear_mp4(media: Callable[[str], Path]) -> Path:
    return media("h264-aac-mp4")


@pytest.fixture(scope="session")
def clear_ts(media: Callable[[str], Path]) -> Path:
    return media("h264-aac-ts")
