"""HLS attribute lists (RFC 8216 §4.2): the one reader and the one writer.

Values are typed on the way out so quoting is never guessed: :class:`Quoted` becomes a
quoted-string, ``bytes`` a hexadecimal-sequence (``0x…``), ``int`` a decimal-integer and a plain
``str`` an enumerated-string.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import ManifestError


class Quoted(str):
    """A value written as an HLS quoted-string."""

    __slots__ = ()


AttrValue = Quoted | str | int | bytes

_NAME = re.compile(r"[A-Z0-9-]+\Z")
_ENUM = re.compile(r"[^\s\",]+\Z")
# NAME=VALUE where VALUE is a quoted string or anything up to the next comma.
_ATTR = re.compile(r'\s*([A-Z0-9-]+)=("[^"\r\n]*"|[^",]*)\s*(?:,|\Z)')


def format_attribute_list(attrs: Sequence[tuple[str, AttrValue]]) -> str:
    """``NAME=VALUE,…`` with each value rendered by its type; bad names/values raise."""
    parts: list[str] = []
    for name, value in attrs:
        if not _NAME.match(name):
            raise ManifestError(f"invalid HLS attribute name {name!r}")
        if isinstance(value, Quoted):
            if any(c in value for c in '"\r\n'):
                raise ManifestError(
                    f"HLS attribute {name} cannot hold a double quote or line break"
                )
            parts.append(f'{name}="{value}"')
        elif isinstance(value, bytes):
            if not value:
                raise ManifestError(f"HLS attribute {name} has an empty hexadecimal value")
            parts.append(f"{name}=0x{value.hex().upper()}")
        elif isinstance(value, bool):
            raise ManifestError(f"HLS attribute {name}: use YES/NO, not a boolean")
        elif isinstance(value, int):
            if value < 0:
                raise ManifestError(f"HLS attribute {name} cannot be negative")
            parts.append(f"{name}={value}")
        else:
            if not _ENUM.match(value):
                raise ManifestError(f"HLS attribute {name} has an invalid enumerated value")
            parts.append(f"{name}={value}")
    return ",".join(parts)


def parse_attribute_list(
    text: str, *, line: int | None = None, path: str | None = None
) -> dict[str, str]:
    """Parse an attribute list; quoted values are returned without their quotes."""
    out: dict[str, str] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _ATTR.match(text, pos)
        if not m or m.end() == pos:
            raise ManifestError(
                f"malformed HLS attribute list near {text[pos:pos + 20]!r}", line=line, path=path
            )
        name, value = m.group(1), m.group(2)
        if name in out:
            raise ManifestError(f"HLS attribute {name} appears twice", line=line, path=path)
        if value.startswith('"'):
            value = value[1:-1]
        out[name] = value
        pos = m.end()
    return out


def parse_hex(value: str, *, what: str, line: int | None = None) -> bytes:
    """``0x…`` hexadecimal-sequence -> bytes."""
    if not value[:2].lower() == "0x" or len(value) <= 2:
        raise ManifestError(f"{what} must be a 0x hexadecimal sequence", line=line)
    digits = value[2:]
    if len(digits) % 2:
        digits = "0" + digits
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise ManifestError(f"{what} is not hexadecimal", line=line) from None
