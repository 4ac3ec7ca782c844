"""``verify``: prove a package with independent decryptors and check its DRM signaling.

For each rendition the segments are decrypted by FFmpeg (>= 8) — fMP4 cenc/cbcs from the init
segment and media segments concatenated, HLS AES-128 and SAMPLE-AES through FFmpeg's own HLS
reader — decoded, and the decoded-frame hashes are compared with the same stream of the clear
reference. The manifest's signaling (DASH ContentProtection, HLS EXT-X-KEY / SESSION-KEY) is
checked against the tenc/seig/pssh boxes of the segments.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from .._redact import redact_text, redact_url
from ..constants import (
    DASH_MP4PROTECTION_SCHEME,
    DASHIF_CLEARKEY,
    KEYFORMAT_IDENTITY,
    KEYFORMAT_PLAYREADY,
    KEYFORMAT_WIDEVINE,
    PLAYREADY,
    W3C_COMMON,
    WIDEVINE,
    Packaging,
    Scheme,
)
from ..drm.pssh import Pssh, PsshError, parse_pssh
from ..errors import ManifestError, MediaError, SpekePackagerError, ToolError, VerificationError
from .boxes import Mp4Facts, read_mp4_facts
from .decode import DecodeError, align, frame_hashes, scrub, stream_kinds
from .package import KeyTag, Package, Rendition, discover
from .signaling import decode_data_uri, parse_hex_kid, parse_playready_object, widevine_kids

AUDIO_EDGE_TOLERANCE = 2  # AAC priming: TS and MP4 decodes may differ by a frame at the edges
_KID_IN_URI = re.compile(r"(?<![0-9a-fA-F])([0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                         r"[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})(?![0-9a-fA-F])")
_METHODS = ("AES-128", "SAMPLE-AES", "SAMPLE-AES-CTR")


@dataclass(frozen=True, slots=True)
class Check:
    """One verification step of one rendition."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(slots=True)
class RenditionReport:
    """All checks of one rendition."""

    name: str
    manifest: str
    container: str
    protection: str = ""
    kids: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(name, ok, detail))


@dataclass(slots=True)
class VerifyReport:
    """The result of :func:`verify_package`; :meth:`raise_for_failure` turns it into an error."""

    package: str
    reference: str
    renditions: list[RenditionReport]

    @property
    def ok(self) -> bool:
        return bool(self.renditions) and all(r.ok for r in self.renditions)

    def failed(self) -> list[RenditionReport]:
        return [r for r in self.renditions if not r.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "package": self.package, "reference": self.reference, "ok": self.ok,
            "renditions": [
                {"name": r.name, "manifest": r.manifest, "container": r.container,
                 "protection": r.protection, "kids": r.kids, "ok": r.ok,
                 "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in r.checks]}
                for r in self.renditions
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def raise_for_failure(self) -> None:
        bad = self.failed()
        if bad:
            parts = []
            for r in bad:
                first = next((c for c in r.checks if not c.ok), Check("checks", False, "none ran"))
                parts.append(f"{r.name} ({first.name}: {first.detail})")
            raise VerificationError(f"{len(bad)} of {len(self.renditions)} renditions failed: "
                                    + "; ".join(parts))


# --- keys ---------------------------------------------------------------------------------------

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


class _Keys:
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


# --- helpers ------------------------------------------------------------------------------------

@contextmanager
def _private_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="speke-verify-"))  # mode 0700
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class _Reference:
    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise VerificationError(f"reference {path} does not exist")
        self.path = path
        self.kinds = stream_kinds(["-i", str(path)])
        self._cache: dict[str, list[str]] = {}

    def streams(self, kind: str) -> list[str]:
        letter = kind[0]
        n = sum(1 for k in self.kinds if k == kind)
        return [f"{letter}:{i}" for i in range(n)]

    def hashes(self, spec: str) -> list[str]:
        if spec not in self._cache:
            self._cache[spec] = frame_hashes(["-i", str(self.path)], spec, what="reference")
        return self._cache[spec]


def _compare(rep: RenditionReport, ref: _Reference, kind: str, spec: str,
             got: list[str]) -> None:
    name = f"frames {spec}"
    if not got:
        rep.add(name, False, "no frames decoded")
        return
    best: tuple[int, int, str] = (-1, 0, "")
    for rs in ref.streams(kind):
        r = ref.hashes(rs)
        matched, _shift = align(got, r, 3 if kind == "audio" else 0)
        if matched > best[0]:
            best = (matched, len(r), rs)
    matched, total, rs = best
    if not rs:
        rep.add(name, False, f"the reference has no {kind} stream")
        return
    tol = AUDIO_EDGE_TOLERANCE if kind == "audio" else 0
    ok = matched >= total - tol and matched >= len(got) - tol
    rep.add(name, ok, f"{matched}/{total} decoded frames match reference {rs}"
            + ("" if ok else f" ({len(got)} decoded)"))


def _pssh_checks(rep: RenditionReport, where: str, boxes: list[Pssh], kid: UUID | None) -> None:
    for p in boxes:
        label = f"pssh {where} {p.system_id}"
        try:
            if p.system_id == W3C_COMMON:
                ok = kid is None or kid in p.kids
                rep.add(label, ok, "common pssh lists the KID" if ok else
                        f"common pssh lists {[str(k) for k in p.kids]}, not {kid}")
            elif p.system_id == WIDEVINE:
                kids = widevine_kids(p.data) or list(p.kids)
                ok = kid is None or not kids or kid in kids
                rep.add(label, ok, "Widevine pssh key_ids match" if ok else
                        f"Widevine pssh lists {[str(k) for k in kids]}, not {kid}")
            elif p.system_id == PLAYREADY:
                hdr = parse_playready_object(p.data)
                ok = kid is None or kid in hdr.kids
                rep.add(label, ok, f"PlayReady {hdr.version} KID (GUID order) matches" if ok else
                        f"PlayReady header KIDs {[str(k) for k in hdr.kids]} do not include {kid}"
                        " (GUID byte order?)")
            else:
                rep.add(label, True, "parses")
        except MediaError as exc:
            rep.add(label, False, str(exc))


# --- fMP4 ---------------------------------------------------------------------------------------

def _mp4_facts(r: Rendition) -> Mp4Facts:
    facts = read_mp4_facts(r.init.read()) if r.init is not None else Mp4Facts()
    for seg in r.segments:
        f = read_mp4_facts(seg.read())
        facts.pssh.extend(f.pssh)
        facts.seig_kids.extend(f.seig_kids)
        facts.fragments += f.fragments
        facts.senc_fragments += f.senc_fragments
        for tid, entries in f.tracks.items():  # self-initialising segments (SegmentBase)
            facts.tracks.setdefault(tid, entries)
            facts.handlers.setdefault(tid, f.handlers.get(tid, ""))
    return facts


def _check_tenc(rep: RenditionReport, facts: Mp4Facts) -> UUID | None:
    tencs = [t for entries in facts.tracks.values() for t in entries]
    if not tencs:
        rep.add("tenc", False, "no encrypted sample entry (sinf/tenc) in the init segment")
        return None
    kid: UUID | None = None
    for t in tencs:
        rep.protection = t.scheme
        if t.scheme == "cenc":
            ok = t.per_sample_iv_size in (8, 16) and (t.crypt_byte_block, t.skip_byte_block) == (
                0, 0)
            detail = f"cenc, {t.per_sample_iv_size}-byte IVs"
        elif t.scheme == "cbcs":
            ok = bool(t.per_sample_iv_size in (0, 8, 16) and (t.constant_iv or t.per_sample_iv_size)
                      and t.crypt_byte_block in (0, 1))
            detail = (f"cbcs {t.crypt_byte_block}:{t.skip_byte_block}, "
                      + (f"constant IV {len(t.constant_iv)} bytes" if t.constant_iv else
                         f"{t.per_sample_iv_size}-byte IVs"))
        else:
            ok, detail = False, f"unsupported scheme {t.scheme!r}"
        rep.add("tenc", ok and t.is_protected, f"{detail}, KID {t.kid}"
                + ("" if t.is_protected else ", not protected"))
        kid = kid or t.kid
    rep.kids = sorted({str(t.kid) for t in tencs} | {str(k) for k in facts.seig_kids})
    if facts.fragments:
        rep.add("senc", facts.senc_fragments == facts.fragments,
                f"{facts.senc_fragments}/{facts.fragments} fragments carry sample encryption data")
    return kid


def _check_dash_signaling(rep: RenditionReport, r: Rendition, facts: Mp4Facts,
                          kid: UUID | None) -> None:
    mp4p = [c for c in r.protections if c.scheme_id == DASH_MP4PROTECTION_SCHEME]
    if not mp4p:
        rep.add("mpd mp4protection", False, "no urn:mpeg:dash:mp4protection:2011 descriptor")
    for c in mp4p:
        ok = c.value == rep.protection
        rep.add("mpd scheme", ok, f"value={c.value!r}, tenc scheme {rep.protection!r}")
        if c.default_kid is None:
            rep.add("mpd default_KID", not facts.seig_kids and kid is None,
                    "absent" + (" (in-band key rotation)" if facts.seig_kids else ""))
            continue
        try:
            mkid = UUID(c.default_kid)
        except ValueError:
            rep.add("mpd default_KID", False, f"{c.default_kid!r} is not a UUID")
            continue
        form_ok = c.default_kid == str(mkid)
        rep.add("mpd default_KID", mkid == kid and form_ok,
                f"{c.default_kid} vs tenc {kid}"
                + ("" if form_ok else " (not lowercase 8-4-4-4-12)"))
    for c in r.protections:
        if not c.scheme_id.startswith("urn:uuid:"):
            continue
        try:
            sysid = UUID(c.scheme_id[9:])
        except ValueError:
            rep.add("mpd ContentProtection", False, f"bad schemeIdUri {c.scheme_id!r}")
            continue
        boxes: list[Pssh] = []
        for text in c.pssh:
            try:
                p = parse_pssh(base64.b64decode(text, validate=True))
            except (ValueError, PsshError) as exc:
                rep.add(f"mpd pssh {sysid}", False, f"does not parse: {exc}")
                continue
            # the DASH-IF ClearKey descriptor carries the W3C common pssh (IOP v5 part 6)
            allowed = {sysid, W3C_COMMON} if sysid == DASHIF_CLEARKEY else {sysid}
            if p.system_id not in allowed:
                rep.add(f"mpd pssh {sysid}", False, f"pssh system ID {p.system_id} differs")
            boxes.append(p)
        _pssh_checks(rep, "mpd", boxes, kid)
        for text in c.pro:
            try:
                hdr = parse_playready_object(base64.b64decode(text, validate=True))
                ok = kid is None or kid in hdr.kids
                rep.add("mpd mspr:pro", ok, "PlayReady KID matches tenc" if ok else
                        f"PlayReady KIDs {[str(k) for k in hdr.kids]} vs tenc {kid}")
            except (ValueError, MediaError) as exc:
                rep.add("mpd mspr:pro", False, str(exc))


def _check_key_tag(rep: RenditionReport, tag: KeyTag, version: int, container: str, *,
                   scheme: str | None, kid: UUID | None, const_iv: bytes) -> None:
    a = tag.attrs
    label = f"EXT-X-KEY line {tag.line}"
    problems: list[str] = []
    method = tag.method
    if method not in _METHODS:
        problems.append(f"METHOD {method!r} unknown")
    if "URI" not in a:
        problems.append("no URI")
    if "IV" in a:
        if not re.fullmatch(r"0[xX][0-9a-fA-F]{32}", a["IV"]):
            problems.append(f"IV {a['IV']!r} is not 0x + 32 hex digits")
        if method == "SAMPLE-AES-CTR":
            problems.append("SAMPLE-AES-CTR must not carry IV")
        if const_iv and a["IV"][2:].lower() != const_iv.hex().ljust(32, "0")[:32]:
            problems.append("IV differs from the tenc constant IV")
    if "KEYFORMATVERSIONS" in a and not re.fullmatch(r"\d+(/\d+)*", a["KEYFORMATVERSIONS"]):
        problems.append(f"KEYFORMATVERSIONS {a['KEYFORMATVERSIONS']!r} malformed")
    need = 5 if ("KEYFORMAT" in a or method == "SAMPLE-AES") else (2 if "IV" in a else 1)
    if version < need:
        problems.append(f"needs EXT-X-VERSION >= {need}, playlist has {version}")
    if container == "ts" and method == "SAMPLE-AES-CTR":
        problems.append("SAMPLE-AES-CTR on MPEG-TS")
    if container == "fmp4" and scheme and method != "AES-128":
        want = {"cbcs": "SAMPLE-AES", "cenc": "SAMPLE-AES-CTR"}.get(scheme)
        if method != want:
            problems.append(f"METHOD {method} does not match tenc scheme {scheme}")
    if "KEYID" in a:
        try:
            tag_kid = parse_hex_kid(a["KEYID"])
            if kid is not None and tag_kid != kid:
                problems.append(f"KEYID {tag_kid} differs from tenc KID {kid}")
        except ManifestError as exc:
            problems.append(str(exc))
    fmt = tag.keyformat
    uri = a.get("URI", "")
    try:
        if fmt == KEYFORMAT_WIDEVINE:
            p = parse_pssh(decode_data_uri(uri))
            if p.system_id != WIDEVINE:
                problems.append("Widevine URI pssh has another system ID")
            wk = widevine_kids(p.data)
            if kid is not None and wk and kid not in wk:
                problems.append("Widevine pssh does not list the tenc KID")
        elif fmt == KEYFORMAT_PLAYREADY:
            hdr = parse_playready_object(decode_data_uri(uri))
            if kid is not None and kid not in hdr.kids:
                problems.append("PlayReady header KID (GUID order) differs from tenc KID")
    except (MediaError, ManifestError) as exc:
        problems.append(f"{fmt} URI: {exc}")
    rep.add(label, not problems, "; ".join(problems) or f"{method} {fmt} well formed")


def _concat(r: Rendition, out: Path) -> Path:
    with out.open("wb") as dst:
        for piece in ([r.init] if r.init else []) + r.segments:
            with piece.path.open("rb") as src:
                src.seek(piece.offset)
                if piece.length is None:
                    shutil.copyfileobj(src, dst, 1 << 20)
                else:
                    dst.write(src.read(piece.length))
    return out


def _verify_fmp4(rep: RenditionReport, r: Rendition, ref: _Reference, keys: _Keys,
                 tmp: Path) -> None:
    facts = _mp4_facts(r)
    kid = _check_tenc(rep, facts)
    _pssh_checks(rep, "box", facts.pssh, kid)
    const_iv = next((t.constant_iv for e in facts.tracks.values() for t in e if t.constant_iv),
                    b"")
    if r.source == "dash":
        _check_dash_signaling(rep, r, facts, kid)
    else:
        if not r.hls_key_tags:
            rep.add("EXT-X-KEY", False, "segments are encrypted but the playlist has no key")
        for tag in r.hls_key_tags:
            if tag.method != "NONE":
                _check_key_tag(rep, tag, r.hls_version, "fmp4", scheme=rep.protection, kid=kid,
                               const_iv=const_iv)
    kids = sorted({t.kid for e in facts.tracks.values() for t in e if t.is_protected}
                  | set(facts.seig_kids), key=str)
    if not kids:
        return
    found = keys.for_kids(kids)
    missing = [str(k) for k in kids if k not in found]
    if missing:
        rep.add("keys", False, f"no key for KID {', '.join(missing)}")
        return
    joined = _concat(r, tmp / "joined.mp4")
    if len(found) == 1:
        dec = ["-decryption_key", next(iter(found.values())).hex()]
    else:
        dec = ["-decryption_keys", ":".join(f"{k.hex}={v.hex()}" for k, v in found.items())]
    secrets = list(found.values())
    args = [*dec, "-i", str(joined)]
    kinds = stream_kinds(["-i", str(joined)])
    counters: dict[str, int] = {}
    for kind in kinds:
        if kind not in ("video", "audio"):
            continue
        spec = f"{kind[0]}:{counters.get(kind, 0)}"
        counters[kind] = counters.get(kind, 0) + 1
        try:
            got = frame_hashes(args, spec, secrets=secrets, what=f"{r.name} {spec}")
        except DecodeError as exc:
            rep.add(f"frames {spec}", False, scrub(str(exc), secrets))
            continue
        _compare(rep, ref, kind, spec, got)


# --- HLS through FFmpeg's HLS reader (AES-128, SAMPLE-AES TS) -----------------------------------

def _write_playlist(r: Rendition, indexes: list[int], key_files: dict[int, Path], dest: Path,
                    *, repeat_each: bool = False) -> None:
    """A private copy of the playlist: absolute segment paths, local key files, explicit IVs."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:5",
             f"#EXT-X-TARGETDURATION:{max(1, r.target_duration)}", "#EXT-X-MEDIA-SEQUENCE:0"]
    if r.init is not None:
        br = f',BYTERANGE="{r.init.length}@{r.init.offset}"' if r.init.length is not None else ""
        lines.append(f'#EXT-X-MAP:URI="{r.init.path.as_uri()}"{br}')
    for i in indexes:
        seg = r.hls_segments[i]
        copies = 2 if repeat_each else 1
        for c in range(copies):
            if c or (seg.discontinuity and i != indexes[0]):
                lines.append("#EXT-X-DISCONTINUITY")
            tag = _decrypt_tag(seg.keys)
            if tag is None:
                lines.append("#EXT-X-KEY:METHOD=NONE")
            else:
                iv = tag.attrs.get("IV") or f"0x{seg.sequence:032x}"
                lines.append(f'#EXT-X-KEY:METHOD={tag.method},URI="{key_files[id(tag)].as_uri()}",'
                             f"IV={iv}")
            lines.append(f"#EXTINF:{seg.duration:.6f},")
            if seg.piece.length is not None:
                lines.append(f"#EXT-X-BYTERANGE:{seg.piece.length}@{seg.piece.offset}")
            lines.append(seg.piece.path.as_uri())
    lines.append("#EXT-X-ENDLIST")
    dest.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _decrypt_tag(tags: tuple[KeyTag, ...]) -> KeyTag | None:
    for t in tags:
        if t.keyformat == KEYFORMAT_IDENTITY:
            return t
    return tags[0] if tags else None


def _hls_input(playlist: Path) -> list[str]:
    return ["-allowed_extensions", "ALL", "-protocol_whitelist", "file,crypto,data",
            "-i", str(playlist)]


def _verify_hls_reader(rep: RenditionReport, r: Rendition, ref: _Reference, keys: _Keys,
                       tmp: Path) -> None:
    tags = [t for t in r.hls_key_tags if t.method != "NONE"]
    methods = sorted({t.method for t in tags})
    rep.protection = ",".join(methods) or "clear"
    for tag in tags:
        _check_key_tag(rep, tag, r.hls_version, r.container, scheme=None, kid=None,
                       const_iv=b"")
    if not tags:
        rep.add("EXT-X-KEY", False, "the playlist has no EXT-X-KEY: the rendition is clear")
        return
    key_files: dict[int, Path] = {}
    secrets: list[bytes] = []
    in_force = [t for t in (_decrypt_tag(s.keys) for s in r.hls_segments) if t is not None]
    for n, tag in enumerate({id(t): t for t in in_force}.values()):
        key, how = keys.for_tag(tag)
        if key is None or len(key) != 16:
            rep.add(f"key line {tag.line}", False, how if key is None else
                    f"{how} yields {len(key)} bytes, not 16")
            return
        kf = tmp / f"k{n}.bin"
        fd = os.open(kf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        key_files[id(tag)] = kf
        secrets.append(key)
        rep.add(f"key line {tag.line}", True, f"from {how}")
    whole = tmp / "whole.m3u8"
    all_idx = list(range(len(r.hls_segments)))
    _write_playlist(r, all_idx, key_files, whole)
    kinds = stream_kinds(_hls_input(whole))
    sample_aes_ts = r.container == "ts" and "SAMPLE-AES" in methods
    counters: dict[str, int] = {}
    for kind in kinds:
        if kind not in ("video", "audio"):
            continue
        spec = f"{kind[0]}:{counters.get(kind, 0)}"
        counters[kind] = counters.get(kind, 0) + 1
        try:
            if sample_aes_ts and kind == "video":
                got = _sample_aes_video(r, key_files, tmp, spec, secrets)
            else:
                got = frame_hashes(_hls_input(whole), spec, secrets=secrets,
                                   what=f"{r.name} {spec}")
        except DecodeError as exc:
            rep.add(f"frames {spec}", False, scrub(str(exc), secrets))
            continue
        _compare(rep, ref, kind, spec, got)


def _sample_aes_video(r: Rendition, key_files: dict[int, Path], tmp: Path, spec: str,
                      secrets: list[bytes]) -> list[str]:
    """FFmpeg's SAMPLE-AES TS reader leaves the last video PES of a playlist encrypted and gives
    a segment's last PES the next segment's IV (media-encryption.md §9). So each segment is
    decoded alone from a playlist holding it twice with the same IV; the first copy's frames
    (counted as packets of the single copy) are exact."""
    out: list[str] = []
    for i in range(len(r.hls_segments)):
        single, double = tmp / f"s{i}.m3u8", tmp / f"d{i}.m3u8"
        _write_playlist(r, [i], key_files, single)
        _write_playlist(r, [i], key_files, double, repeat_each=True)
        n = len(frame_hashes(_hls_input(single), spec, secrets=secrets, decode=False,
                             what=f"{r.name} segment {i} packets"))
        hashes = frame_hashes(_hls_input(double), spec, secrets=secrets,
                              what=f"{r.name} segment {i}")
        out.extend(hashes[:n])
    return out


# --- package level -----------------------------------------------------------------------------

def _session_key_checks(pkg: Package) -> RenditionReport | None:
    if not pkg.session_keys:
        return None
    rep = RenditionReport("hls:session-keys", str(pkg.session_keys[0].playlist), "-")
    by_uri: dict[str, list[KeyTag]] = {}
    for r in pkg.renditions:
        for t in r.hls_key_tags:
            by_uri.setdefault(t.attrs.get("URI", ""), []).append(t)
    seen: set[tuple[tuple[str, str], ...]] = set()
    for sk in pkg.session_keys:
        label = f"EXT-X-SESSION-KEY line {sk.line}"
        ident = tuple(sorted(sk.attrs.items()))
        problems = []
        if sk.method not in _METHODS:
            problems.append(f"METHOD {sk.method!r} not allowed")
        if ident in seen:
            problems.append("duplicate of an earlier EXT-X-SESSION-KEY")
        seen.add(ident)
        for t in by_uri.get(sk.attrs.get("URI", ""), []):
            for attr in ("METHOD", "KEYFORMAT", "KEYFORMATVERSIONS"):
                if t.attrs.get(attr) != sk.attrs.get(attr):
                    problems.append(f"{attr} differs from EXT-X-KEY at {t.playlist.name}:{t.line}")
                    break
        rep.add(label, not problems, "; ".join(dict.fromkeys(problems)) or "consistent")
    return rep


def package_protection(directory: str | os.PathLike[str]) -> tuple[list[Scheme], list[Packaging]]:
    """The schemes and packagings a package uses (to ask a SPEKE server for its keys)."""
    pkg = discover(Path(directory))
    schemes: list[Scheme] = []
    packagings: list[Packaging] = []
    for r in pkg.renditions:
        if r.source == "dash":
            packagings.append(Packaging.DASH)
        else:
            packagings.append(Packaging.HLS_TS if r.container == "ts" else Packaging.HLS_FMP4)
        methods = {t.method for t in r.hls_key_tags}
        if "AES-128" in methods:
            schemes.append(Scheme.AES_128)
        elif r.container == "ts" and "SAMPLE-AES" in methods:
            schemes.append(Scheme.SAMPLE_AES)
        elif r.init is not None:
            facts = read_mp4_facts(r.init.read())
            for entries in facts.tracks.values():
                for t in entries:
                    if t.scheme in ("cenc", "cbcs"):
                        schemes.append(Scheme(t.scheme))
    return list(dict.fromkeys(schemes)), list(dict.fromkeys(packagings))


def verify_package(
    directory: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    *,
    keys: Mapping[UUID, bytes] | None = None,
    clearkey_license_url: str | None = None,
    fetch_key_uris: bool = True,
) -> VerifyReport:
    """Verify every rendition of the package in ``directory`` against the clear ``reference``.

    Keys come from ``keys`` (KID -> 16 bytes), a W3C ClearKey licence server, or (HLS) the
    playlist's key URIs when ``fetch_key_uris``. Returns a report; mismatches do not raise
    (call :meth:`VerifyReport.raise_for_failure`). Missing tools raise :class:`ToolError`.
    """
    root = Path(directory).resolve()
    ref = _Reference(Path(reference))
    pkg = discover(root)
    ks = _Keys(keys or {}, clearkey_license_url, fetch_key_uris, root)
    reports: list[RenditionReport] = []
    for r in pkg.renditions:
        rep = RenditionReport(r.name, str(r.manifest.relative_to(root)), r.container)
        reports.append(rep)
        with _private_dir() as tmp:
            try:
                method_aes128 = any(t.method == "AES-128" for t in r.hls_key_tags)
                if r.source == "hls" and (r.container == "ts" or method_aes128):
                    _verify_hls_reader(rep, r, ref, ks, tmp)
                else:
                    _verify_fmp4(rep, r, ref, ks, tmp)
            except DecodeError as exc:
                rep.add("decode", False, scrub(str(exc), ks.secrets()))
            except ToolError:
                raise
            except SpekePackagerError as exc:
                rep.add("read", False, scrub(str(exc), ks.secrets()))
    sk = _session_key_checks(pkg)
    if sk is not None:
        reports.append(sk)
    return VerifyReport(str(root), str(Path(reference)), reports)
