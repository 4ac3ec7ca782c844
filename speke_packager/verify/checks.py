"""DRM signaling checks of ``verify``: tenc/senc of the segments, pssh boxes, DASH
ContentProtection, HLS EXT-X-KEY and EXT-X-SESSION-KEY, each against the others."""

from __future__ import annotations

import base64
import re
from uuid import UUID

from ..constants import (
    DASH_MP4PROTECTION_SCHEME,
    DASHIF_CLEARKEY,
    KEYFORMAT_PLAYREADY,
    KEYFORMAT_WIDEVINE,
    PLAYREADY,
    W3C_COMMON,
    WIDEVINE,
)
from ..drm.pssh import Pssh, PsshError, parse_pssh
from ..errors import ManifestError, MediaError
from .boxes import Mp4Facts
from .fragments import classify_fragments
from .package import KeyTag, Package, Rendition
from .report import RenditionReport
from .signaling import decode_data_uri, parse_hex_kid, parse_playready_object, widevine_kids

METHODS = ("AES-128", "SAMPLE-AES", "SAMPLE-AES-CTR")


def pssh_checks(rep: RenditionReport, where: str, boxes: list[Pssh], kid: UUID | None) -> None:
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


def check_tenc(rep: RenditionReport, facts: Mp4Facts) -> UUID | None:
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
        summary = classify_fragments(facts)
        rep.add("senc", summary.ok, summary.detail())
    return kid


def check_dash_signaling(rep: RenditionReport, r: Rendition, facts: Mp4Facts,
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
        pssh_checks(rep, "mpd", boxes, kid)
        for text in c.pro:
            try:
                hdr = parse_playready_object(base64.b64decode(text, validate=True))
                ok = kid is None or kid in hdr.kids
                rep.add("mpd mspr:pro", ok, "PlayReady KID matches tenc" if ok else
                        f"PlayReady KIDs {[str(k) for k in hdr.kids]} vs tenc {kid}")
            except (ValueError, MediaError) as exc:
                rep.add("mpd mspr:pro", False, str(exc))


def check_key_tag(rep: RenditionReport, tag: KeyTag, version: int, container: str, *,
                   scheme: str | None, kid: UUID | None, const_iv: bytes) -> None:
    a = tag.attrs
    label = f"EXT-X-KEY line {tag.line}"
    problems: list[str] = []
    method = tag.method
    if method not in METHODS:
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


def session_key_checks(pkg: Package) -> RenditionReport | None:
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
        if sk.method not in METHODS:
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
