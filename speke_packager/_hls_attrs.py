"""HLS attribute lists (RFC 8216 §4.2): the one reader and the one writer, for every layer.

keys (the key server's HLSSignalingData), manifests (playlists), keyserver (the lines it sends)
and verify (the playlists it checks) all read and write ``NAME=VALUE,…`` here.

Reading is strict: names are ``[A-Z0-9-]+``; a value is a quoted-string (no ``"``, CR or LF
inside, closed on the same line) or an unquoted value without ``"``, ``,`` or white space;
attributes are separated by one comma (spaces or tabs around an attribute are tolerated, a
trailing comma too). A name given twice, an empty attribute, an unterminated quote or anything
else raises :class:`~speke_packager.errors.ManifestError`; callers in other layers re-raise it as
their own error type.

Values are typed on the way out so quoting is never guessed: :class:`Quoted` becomes a
quoted-string, ``bytes`` a hexadecimal-sequence (``0x…``, upper case), ``int`` a decimal-integer
and a plain ``str`` an enumerated-string (written as given).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .errors import ManifestError

__all__ = ["AttrValue", "Quoted", "format_attribute_list", "parse_attribute_list", "parse_hex"]


class Quoted(str):
    """A value written as an HLS quoted-string."""

    __slots__ = ()


AttrValue = Quoted | str | int | bytes

_NAME = re.compile(r"[A-Z0-9-]+\Z")
_ENUM = re.compile(r"[^\s\",]+\Z")
# One attribute: NAME=VALUE, VALUE a quoted-string on one line or an unquoted run without quotes,
# commas or white space; spaces/tabs around it are allowed.
_ATTR = re.compile(r'[ \t]*([A-Z0-9-]+)=("[^"\r\n]*"|[^",\s]*)[ \t]*')


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
    """Parse an attribute list (the text after ``#EXT-…:``); quoted values come back without
    their quotes. ``line``/``path`` locate a :class:`ManifestError`."""
    out: dict[str, str] = {}
    text = text.strip()
    pos = 0
    while pos < len(text):
        m = _ATTR.match(text, pos)
        if m is None:
            raise ManifestError(
                f"malformed HLS attribute list near {text[pos:pos + 20]!r}", line=line, path=path
            )
        name, value = m.group(1), m.group(2)
        if name in out:
            raise ManifestError(f"HLS attribute {name} appears twice", line=line, path=path)
        out[name] = value[1:-1] if value.startswith('"') else value
        pos = m.end()
        if pos < len(text):
            if text[pos] != ",":
                raise ManifestError(
                    f"malformed HLS attribute list near {text[pos:pos + 20]!r}", line=line,
                    path=path)
            pos += 1
    return out


def parse_hex(value: str, *, what: str, line: int | None = None) -> bytes:
    """``0x…`` hexadecimal-sequence -> bytes (an odd digit count gets a leading zero)."""
    if not value[:2].lower() == "0x" or len(value) <= 2:
        raise ManifestError(f"{what} must be a 0x hexadecimal sequence", line=line)
    digits = value[2:]
    if len(digits) % 2:
        digits = "0" + digits
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise ManifestError(f"{what} is not hexadecimal", line=line) from None
