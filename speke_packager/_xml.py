"""The one hardened XML parser: no entity expansion, no DTD, no network, a size limit."""

from __future__ import annotations

import re

from lxml import etree

from .errors import CpixError, SpekePackagerError

MAX_XML_BYTES = 8 * 1024 * 1024
MAX_ATTRIBUTE_BYTES = 1024 * 1024  # no CPIX, MPD or CPD attribute comes close

# A DOCTYPE or ENTITY declaration anywhere (a long comment may push it past any fixed prefix).
_DECL = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_DECL_BYTES = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
# Encodings in which ASCII bytes mean ASCII characters, so the byte scan above is exact.
_ASCII_COMPATIBLE = frozenset({
    "utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "iso8859-1", "latin1", "latin-1",
    "iso-8859-15", "windows-1252", "cp1252",
})
# (first bytes, codec): UTF-32 and UTF-16 with or without a byte-order mark (XML 1.0 App. F).
_WIDE = (
    (b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\x00<", "utf-32-be"), (b"<\x00\x00\x00", "utf-32-le"),
    (b"\xfe\xff", "utf-16-be"), (b"\xff\xfe", "utf-16-le"),
    (b"\x00<\x00?", "utf-16-be"), (b"<\x00?\x00", "utf-16-le"),
)


class _RefuseExternal(etree.Resolver):
    """Answers every external DTD/entity load with an empty document and records it.

    lxml loads an external DTD subset even with ``load_dtd=False``; the declaration scan refuses
    such documents first, this is the second wall (no file or network read ever happens)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = False

    def resolve(  # type: ignore[override]  # lxml passes a context the stubs leave out
        self, system_url: str | None, public_id: str | None, context: object
    ) -> object:
        self.asked = True
        return self.resolve_string("", context, base_url=None)


def _parser(resolver: _RefuseExternal) -> etree.XMLParser:
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        dtd_validation=False,
        load_dtd=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=True,
        collect_ids=False,
    )
    parser.resolvers.add(resolver)
    return parser


def parse_xml(
    data: bytes,
    *,
    max_bytes: int = MAX_XML_BYTES,
    max_attribute: int = MAX_ATTRIBUTE_BYTES,
    what: str = "XML document",
    error: type[SpekePackagerError] | None = None,
) -> etree._Element:
    """Parse untrusted XML safely; raises ``error`` (default :class:`CpixError`).

    A DOCTYPE or entity declaration is refused outright, wherever it sits and in whatever
    encoding the document uses: CPIX, MPD and CPD fragments never need one, and refusing it stops
    billion-laughs, external-DTD and external-entity attacks before lxml sees them. Encodings
    other than UTF-8/16/32, ASCII and Latin-1 are refused (UTF-7 or EBCDIC could hide a
    declaration from the scan). Nesting deeper than 256 elements is refused by libxml2, an
    attribute value longer than ``max_attribute`` characters here."""
    exc_type: type[SpekePackagerError] = error or CpixError
    if len(data) > max_bytes:
        raise exc_type(f"{what} is {len(data)} bytes, larger than the limit of {max_bytes}")
    data = bytes(data)
    if _has_declaration(data, what, exc_type):
        raise exc_type(f"{what} contains a DTD or entity declaration, which is not allowed")
    resolver = _RefuseExternal()
    try:
        root = etree.fromstring(data, _parser(resolver))
    except etree.XMLSyntaxError as exc:
        raise exc_type(f"{what} is not well-formed XML: {exc}") from None
    except (ValueError, LookupError) as exc:  # e.g. an unknown encoding name
        raise exc_type(f"{what} cannot be decoded: {exc}") from None
    tree = root.getroottree()
    info = tree.docinfo
    if resolver.asked or info.externalDTD is not None or info.internalDTD is not None:
        raise exc_type(f"{what} contains a DTD or entity declaration, which is not allowed")
    if len(data) > max_attribute:  # only then can an attribute be that long
        for el in root.iter():
            for name, value in el.attrib.items():
                if len(value) > max_attribute:
                    raise exc_type(f"{what}: attribute {name!s} is {len(value)} characters, longer "
                                   f"than the limit of {max_attribute}")
    return root


def _has_declaration(data: bytes, what: str, exc_type: type[SpekePackagerError]) -> bool:
    for prefix, codec in _WIDE:
        if data.startswith(prefix):
            text = data.decode(codec, errors="replace")
            return _DECL.search(text) is not None
    match = _ENCODING.match(data[3:] if data.startswith(b"\xef\xbb\xbf") else data)
    if match is not None:
        name = match.group(1).decode("ascii").lower()
        if name not in _ASCII_COMPATIBLE:
            raise exc_type(f"{what} declares the encoding {name!r}; use UTF-8")
    return _DECL_BYTES.search(data) is not None
