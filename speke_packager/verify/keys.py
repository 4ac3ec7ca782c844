"""Where ``verify`` gets content keys (given, W3C ClearKey licence, HLS key URIs) and how they
reach a child process: only through 0600 files in a private 0700 folder, never its argv."""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from uuid import UUID

from .._redact import redact_text, redact_url
from ..errors import VerificationError
from .package import KeyTag
from .signaling import decode_data_uri, parse_hex_kid

_KID_IN_URI = re.compile(r"(?<![0-9a-fA-F])([0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                         r"[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})(?![0-9a-fA-F])")


def write_private(path: Path, data: bytes) -> Path:
    """Create ``path`` (which must not exist) with mode 0600 and write ``data`` to it. The
    caller's folder is a private 0700 temporary folder, removed after use."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def fetch_clearkey_keys(url: str, kids: list[UUID], timeout: float = 10.0) -> dict[UUID, bytes]:
    """Ask a W3C ClearKey licence server for ``kids`` (as a CDM would)."""
    body = json.dumps({"kids": [_b64url(k.bytes) for k in kids], "type": "temporary"}).encode()
    if not url.startswith(("http://", "https://")):
        raise VerificationError(f"ClearKey licence URL {redact_url(url)!r} is not http(s)")
    req = urllib.request.Request(url, data=body, method="POST",  # noqa: S310 (checked above)
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (user's URL)
            answer = json.loads(resp.read(1 << 20))
    except (OSError, ValueError) as exc:
        raise VerificationError(f"ClearKey licence request to {redact_url(url)} failed: "
                                f"{redact_text(str(exc))}") from exc
    out: dict[UUID, bytes] = {}
    for k in answer.get("keys", []) if isinstance(answer, dict) else []:
        try:
            out[UUID(bytes=_b64url_decode(k["kid"]))] = _b64url_decode(k["k"])
        except (KeyError, ValueError, TypeError) as exc:
            raise VerificationError(f"ClearKey licence from {redact_url(url)} is malformed"
                                    ) from exc
    return out


class KeySource:
    """Content keys by KID, completed on demand from a ClearKey licence server or key URIs."""

    def __init__(self, keys: Mapping[UUID, bytes], clearkey_url: str | None, fetch_uris: bool,
                 root: Path) -> None:
        self.keys = dict(keys)
        self.clearkey_url = clearkey_url
        self.fetch_uris = fetch_uris
        self.root = root

    def secrets(self) -> list[bytes]:
        return list(self.keys.values())

    def for_kids(self, kids: list[UUID]) -> dict[UUID, bytes]:
        missing = [k for k in kids if k not in self.keys]
        if missing and self.clearkey_url:
            self.keys.update(fetch_clearkey_keys(self.clearkey_url, missing))
        return {k: self.keys[k] for k in kids if k in self.keys}

    def for_tag(self, tag: KeyTag) -> tuple[bytes | None, str]:
        """Key bytes for an HLS key tag and how they were found."""
        uri = tag.attrs.get("URI", "")
        kid: UUID | None = None
        if "KEYID" in tag.attrs:
            kid = parse_hex_kid(tag.attrs["KEYID"])
        else:
            m = _KID_IN_URI.search(uri)
            if m and UUID(hex=m.group(1).replace("-", "")) in self.keys:
                kid = UUID(hex=m.group(1).replace("-", ""))
        if kid is not None and self.for_kids([kid]):
            return self.keys[kid], f"KID {kid}"
        if len(self.keys) == 1 and not self.clearkey_url:
            return next(iter(self.keys.values())), "the only key given"
        if self.fetch_uris:
            data = self._fetch(uri, tag.playlist)
            if data is not None:
                return data, "key URI"
        return None, "no key for this EXT-X-KEY"

    def _fetch(self, uri: str, playlist: Path) -> bytes | None:
        if uri.startswith("data:"):
            return decode_data_uri(uri)
        if uri.startswith(("http://", "https://")):
            try:
                with urllib.request.urlopen(uri, timeout=10) as resp:  # noqa: S310
                    return bytes(resp.read(64))
            except OSError:
                return None
        p = (playlist.parent / uri).resolve()
        if "://" not in uri and self.root in p.parents and p.is_file():
            return p.read_bytes()[:64]
        return None

