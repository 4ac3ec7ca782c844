"""The raw-key route's KID, read by one function for the key server and ``serve``."""

from __future__ import annotations

from uuid import UUID

import pytest

from speke_packager.keyserver.clearkey import key_route_kid

KID = UUID("00112233-4455-6677-8899-aabbccddeeff")


@pytest.mark.parametrize("name", [
    "00112233445566778899aabbccddeeff", "00112233-4455-6677-8899-aabbccddeeff",
    "00112233445566778899AABBCCDDEEFF.key", "/00112233445566778899aabbccddeeff/",
])
def test_kid_forms(name: str) -> None:
    assert key_route_kid(name) == KID


@pytest.mark.parametrize("name", [
    "", "0011", "00112233445566778899aabbccddeeffaa", "g0112233445566778899aabbccddeeff",
    "{00112233-4455-6677-8899-aabbccddeeff}", "urn:uuid:00112233-4455-6677-8899-aabbccddeeff",
    "..", "00112233445566778899aabbccddee%00",
])
def test_not_a_kid(name: str) -> None:
    assert key_route_kid(name) is None
