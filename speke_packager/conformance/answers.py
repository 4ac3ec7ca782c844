"""Checks on every answer of a version: the client's strict validation, then deeper looks at the
signaling with the project's own DRM parsers (each independent of the strict validation, so a
fault shows up in the check that names it)."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

from ..constants import (
    DASHIF_CLEARKEY,
    KEYFORMAT_FAIRPLAY,
    NS_SPEKE,
    SPEKE_USER_AGENT_HEADER,
    SPEKE_V1_USER_AGENT_HEADER,
    SPEKE_VERSION_HEADER,
    SYSTEM_ID_TO_DRM,
    W3C_COMMON,
    WIDEVINE,
    DrmSystem,
    SpekeVersion,
)
from ..drm.playready import parse_playready_object, playready_checksum
from ..drm.pssh import Pssh, parse_pssh
from ..drm.widevine import parse_widevine_pssh_data
from ..errors import SpekePackagerError
from ..keys.cpix.model import CpixDrmSystem, Placeholder
from ..keys.drm_signals import check_hls, cpd_pssh, parse_hls_attributes  # the same rules
from ..keys.envelope import strict_b64decode
from .model import V2_VERSIONS, CheckFailed, CheckSkipped, CheckWarning, Exchange, register_check
from .runner import RunContext

__all__ = ["VALIDATION_HINTS", "signals"]

VALIDATION_HINTS = {
    "version-echo": "echo X-Speke-Version exactly as sent",
    "pssh": "PSSH must be a whole pssh box whose SystemID is the DRMSystem@systemId",
    "cpd": "ContentProtectionData's cenc:pssh must be the PSSH, byte for byte",
    "hls": "HLSSignalingData: base64 of whole #EXT-X-KEY / #EXT-X-SESSION-KEY lines that agree",
    "kid": "keep every requested KID (or override it consistently everywhere)",
    "scheme": "return commonEncryptionScheme unchanged",
    "explicit-iv": "echo explicitIV unchanged; never put the content key there",
    "encryption": "encrypt every key when a DeliveryDataList is sent",
    "usage-rules": "return the ContentKeyUsageRuleList unchanged",
    "content-id": "return CPIX@contentId and @version unchanged",
}


def _answers(ctx: RunContext, v: SpekeVersion) -> list[Exchange]:
    found = ctx.answers(v)
    if not found:
        raise CheckSkipped("no request of this version was answered")
    return found


def _b64(text: str, what: str) -> bytes:
    try:
        return strict_b64decode(text, what)
    except SpekePackagerError as exc:
        raise CheckFailed(str(exc)) from None


def signals(ex: Exchange, drm: DrmSystem, placeholder: Placeholder
            ) -> Iterator[tuple[str, CpixDrmSystem | None, str | None]]:
    """(kid, DRMSystem or None, element text or None) for every key of ``ex`` whose request
    asked ``drm`` for ``placeholder``."""
    assert ex.doc is not None
    if placeholder not in ex.request.placeholders.get(drm, ()):
        return
    for rk in ex.request.keys:
        kid = str(rk.kid)
        mine = [d for d in ex.doc.drm_for(kid)
                if _drm(d.system_id) is drm]
        if not mine:
            yield kid, None, None
            continue
        els = mine[0].find(placeholder)
        yield kid, mine[0], (els[0].text.strip() or None) if els else None


def _drm(system_id: str) -> DrmSystem | None:
    try:
        return SYSTEM_ID_TO_DRM.get(UUID(system_id))
    except ValueError:
        return None


def _need(ex: Exchange, kid: str, d: CpixDrmSystem | None, text: str | None, what: str) -> str:
    if d is None:
        raise CheckFailed(f"{ex.check}: no DRMSystem for KID {kid}")
    if text is None:
        raise CheckFailed(f"{ex.check}: {what} missing or empty (KID {kid})")
    return text


@register_check("strict-validation", hint="see the reason: the rule is named in brackets",
                title="every answer passes the client's strict validation (speke.md §5)")
def strict_validation(ctx: RunContext, v: SpekeVersion) -> str:
    bad = [e for e in _answers(ctx, v) if e.validation_error]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise CheckFailed(f"{bad[0].check}: {bad[0].validation_error}{more}",
                          VALIDATION_HINTS.get(bad[0].validation_check or "", ""))
    return f"{len(ctx.answers(v))} answer(s) valid"


@register_check("version-echo", versions=V2_VERSIONS,
                hint="echo the request's X-Speke-Version in the answer, unchanged",
                title="X-Speke-Version echoed on every v2 answer")
def version_echo(ctx: RunContext, v: SpekeVersion) -> str:
    for ex in _answers(ctx, v):
        echo = ex.header(SPEKE_VERSION_HEADER)
        if echo is None:
            raise CheckFailed(f"{ex.check}: the answer has no X-Speke-Version header")
        if echo.strip() != v.header:
            raise CheckFailed(f"{ex.check}: X-Speke-Version {echo.strip()[:20]!r} answered to "
                              f"{v.header!r}")
    return f"'{v.header}' echoed"


@register_check("user-agent", title="the answer names the key server (X-Speke-User-Agent)",
                hint="send X-Speke-User-Agent (SPEKE v2 requires it; v1 Speke-User-Agent)")
def user_agent(ctx: RunContext, v: SpekeVersion) -> str:
    for ex in _answers(ctx, v):
        agent = ex.header(SPEKE_USER_AGENT_HEADER)
        if agent is None and not v.is_v2:
            agent = ex.header(SPEKE_V1_USER_AGENT_HEADER)
        if agent is None:
            msg = f"{ex.check}: no {'X-' if v.is_v2 else ''}Speke-User-Agent header"
            if v.is_v2:
                raise CheckFailed(msg)
            raise CheckWarning(msg)
    agents = {ex.header(SPEKE_USER_AGENT_HEADER) or ex.header(SPEKE_V1_USER_AGENT_HEADER)
              for ex in ctx.answers(v)}
    return ", ".join(sorted(a[:40] for a in agents if a))


@register_check("content-id-echo", hint="return CPIX@contentId and @version (v1 @id) unchanged",
                title="content id and CPIX version echoed")
def content_id_echo(ctx: RunContext, v: SpekeVersion) -> None:
    for ex in _answers(ctx, v):
        assert ex.doc is not None
        cid = ex.request.content_id
        got = ex.doc.content_id if v.is_v2 else (ex.doc.id or ex.doc.content_id)
        if got != cid:
            raise CheckFailed(f"{ex.check}: content id {got!r} answered to {cid!r}")
        if v.is_v2 and ex.doc.version != v.cpix_version:
            raise CheckFailed(f"{ex.check}: CPIX@version {ex.doc.version!r} answered to "
                              f"{v.cpix_version!r}")


@register_check("no-v1-namespace", versions=V2_VERSIONS,
                hint="drop the speke: namespace and elements from v2 answers (MediaPackage "
                     "refuses them; AWS's reference server issue #130)",
                title="no SPEKE v1 namespace in a v2 answer")
def no_v1_namespace(ctx: RunContext, v: SpekeVersion) -> None:
    for ex in _answers(ctx, v):
        if NS_SPEKE.encode() in ex.body:
            raise CheckFailed(f"{ex.check}: the v2 answer declares {NS_SPEKE}")


@register_check("cpd-equals-pssh", versions=V2_VERSIONS, hint=VALIDATION_HINTS["cpd"],
                title="ContentProtectionData cenc:pssh = PSSH")
def cpd_equals_pssh(ctx: RunContext, v: SpekeVersion) -> str:
    n = 0
    for ex in _answers(ctx, v):
        for drm in ex.request.placeholders:
            for kid, d, cpd in signals(ex, drm, Placeholder.CONTENT_PROTECTION_DATA):
                cpd_text = _b64(_need(ex, kid, d, cpd, f"{drm.label} ContentProtectionData"),
                                "ContentProtectionData").decode("utf-8", errors="replace")
                assert d is not None
                pssh_els = d.find(Placeholder.PSSH)
                pssh = pssh_els[0].text.strip() if pssh_els else ""
                if not pssh:
                    raise CheckFailed(f"{ex.check}: {drm.label} has ContentProtectionData but "
                                      f"no PSSH (KID {kid})")
                try:
                    boxes, _ = cpd_pssh(cpd_text, kid)
                except SpekePackagerError as exc:
                    raise CheckFailed(f"{ex.check}: {exc}") from None
                if _b64(pssh, "PSSH") not in boxes:
                    raise CheckFailed(f"{ex.check}: {drm.label} ContentProtectionData cenc:pssh "
                                      f"differs from PSSH (KID {kid})")
                n += 1
    if not n:
        raise CheckSkipped("no ContentProtectionData was requested")
    return f"{n} pair(s) equal"


def _box(ex: Exchange, kid: str, d: CpixDrmSystem | None, text: str | None, what: str) -> Pssh:
    raw = _b64(_need(ex, kid, d, text, what), what)
    try:
        return parse_pssh(raw)
    except SpekePackagerError as exc:
        raise CheckFailed(f"{ex.check}: {what} is not a pssh box: {exc} (KID {kid})") from None


@register_check("widevine-pssh", hint="the WidevinePsshData key_ids (field 2) list the KID",
                title="Widevine PSSH: a Widevine box whose protobuf holds the KID")
def widevine_pssh(ctx: RunContext, v: SpekeVersion) -> str:
    n = 0
    for ex in _answers(ctx, v):
        for kid, d, text in signals(ex, DrmSystem.WIDEVINE, Placeholder.PSSH):
            box = _box(ex, kid, d, text, "Widevine PSSH")
            if box.system_id != WIDEVINE:
                raise CheckFailed(f"{ex.check}: Widevine PSSH box SystemID is {box.system_id}")
            try:
                data = parse_widevine_pssh_data(box.data)
            except SpekePackagerError as exc:
                raise CheckFailed(f"{ex.check}: WidevinePsshData does not parse: {exc}"
                                  ) from None
            if UUID(kid) not in (*data.key_ids, *box.kids):
                raise CheckFailed(f"{ex.check}: Widevine PSSH does not hold KID {kid}")
            n += 1
    if not n:
        raise CheckSkipped("no Widevine PSSH was requested")
    return f"{n} box(es)"


def _pros(ex: Exchange, kid: str, d: CpixDrmSystem) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for ph in (Placeholder.PSSH, Placeholder.CONTENT_PROTECTION_DATA, Placeholder.HLS_MEDIA,
               Placeholder.SPEKE_PROTECTION_HEADER, Placeholder.SMOOTH_STREAMING):
        for el in d.find(ph):
            if not el.text.strip():
                continue
            raw = _b64(el.text, ph.value)
            if ph is Placeholder.PSSH:
                out.append(("PSSH", _box(ex, kid, d, el.text, "PlayReady PSSH").data))
            elif ph is Placeholder.CONTENT_PROTECTION_DATA:
                try:
                    out += [("mspr:pro", p) for p in
                            cpd_pssh(raw.decode("utf-8", errors="replace"), kid)[1]]
                except SpekePackagerError as exc:
                    raise CheckFailed(f"{ex.check}: {exc}") from None
            elif ph is Placeholder.HLS_MEDIA:
                line = raw.decode("utf-8", errors="replace").strip().splitlines()[:1]
                uri = parse_hls_attributes(line[0]).get("URI", "") if line else ""
                if uri.startswith("data:") and "base64," in uri:
                    out.append(("HLS URI", _b64(uri.partition("base64,")[2], "HLS URI")))
            else:
                out.append((ph.value, raw))
    return out


@register_check("playready-object", hint="a PlayReady Object with a WRMHEADER whose KID is the "
                                         "little-endian GUID of the KID and whose CHECKSUM fits",
                title="PlayReady object parses; KID in PlayReady byte order; checksum")
def playready_object(ctx: RunContext, v: SpekeVersion) -> str:
    n = 0
    for ex in _answers(ctx, v):
        if DrmSystem.PLAYREADY not in ex.request.placeholders:
            continue
        for rk in ex.request.keys:
            kid = str(rk.kid)
            mine = [d for d in ex.doc.drm_for(kid) if _drm(d.system_id) is DrmSystem.PLAYREADY
                    ] if ex.doc else []
            if not mine:
                raise CheckFailed(f"{ex.check}: no PlayReady DRMSystem for KID {kid}")
            pros = _pros(ex, kid, mine[0])
            if not pros:
                raise CheckFailed(f"{ex.check}: no PlayReady object in the answer (KID {kid})")
            for where, pro in pros:
                try:
                    hdr = parse_playready_object(pro)
                except SpekePackagerError as exc:
                    raise CheckFailed(f"{ex.check}: {where}: {exc}") from None
                if rk.kid not in hdr.kids:
                    swapped = any(k.bytes_le == rk.kid.bytes for k in hdr.kids)
                    raise CheckFailed(f"{ex.check}: {where} WRMHEADER does not hold KID {kid}" + (
                        " (it is written in network byte order, not PlayReady's little-endian "
                        "GUID)" if swapped else ""))
                key = ex.keys.get(kid)
                i = hdr.kids.index(rk.kid)
                checksum = hdr.checksums[i] if i < len(hdr.checksums) else None
                if key is not None and checksum and (hdr.algid or "AESCTR") == "AESCTR" \
                        and checksum != playready_checksum(rk.kid, key):
                    raise CheckFailed(f"{ex.check}: {where} CHECKSUM does not fit the key of "
                                      f"KID {kid}")
                n += 1
    if not n:
        raise CheckSkipped("no PlayReady signaling was requested")
    return f"{n} object(s)"


@register_check("fairplay-uri", hint="FairPlay URI skd://…, KEYFORMAT "
                                     "com.apple.streamingkeydelivery",
                title="FairPlay: skd:// URI and KEYFORMAT")
def fairplay_uri(ctx: RunContext, v: SpekeVersion) -> str:
    n = 0
    for ex in _answers(ctx, v):
        found: list[tuple[str, str, str]] = []
        for kid, d, text in signals(ex, DrmSystem.FAIRPLAY, Placeholder.HLS_MEDIA):
            line = _b64(_need(ex, kid, d, text, "FairPlay HLSSignalingData"), "HLS")
            a = parse_hls_attributes(line.decode("utf-8", errors="replace").strip())
            found.append((kid, a.get("URI", ""), a.get("KEYFORMAT", "")))
        for kid, d, text in signals(ex, DrmSystem.FAIRPLAY, Placeholder.URI_EXT_X_KEY):  # v1
            uri = _b64(_need(ex, kid, d, text, "URIExtXKey"), "URIExtXKey")
            assert d is not None
            kfs = [e.text for e in d.find(Placeholder.SPEKE_KEY_FORMAT) if e.text.strip()]
            kfb = _b64(kfs[0], "speke:KeyFormat") if kfs else b""
            found.append((kid, uri.decode("utf-8", errors="replace"),
                          kfb.decode("utf-8", errors="replace")))
        for kid, u, kf in found:
            if not u.startswith("skd://") or len(u) <= len("skd://"):
                raise CheckFailed(f"{ex.check}: FairPlay URI {u[:60]!r} is not skd://… "
                                  f"(KID {kid})")
            if kf != KEYFORMAT_FAIRPLAY:
                raise CheckFailed(f"{ex.check}: FairPlay KEYFORMAT {kf[:40]!r} (KID {kid})")
            n += 1
    if not n:
        raise CheckSkipped("no FairPlay signaling was requested")
    return f"{n} key(s)"


@register_check("clearkey-pssh", hint="ClearKey: a W3C common pssh, version 1, listing the KIDs",
                title="ClearKey: pssh v1 lists the KIDs")
def clearkey_pssh(ctx: RunContext, v: SpekeVersion) -> str:
    n = 0
    for ex in _answers(ctx, v):
        for kid, d, text in signals(ex, DrmSystem.CLEARKEY, Placeholder.PSSH):
            box = _box(ex, kid, d, text, "ClearKey PSSH")
            if box.system_id not in (W3C_COMMON, DASHIF_CLEARKEY) or box.version != 1:
                raise CheckFailed(f"{ex.check}: ClearKey PSSH is a v{box.version} box of "
                                  f"{box.system_id}, not a W3C common v1 box")
            if UUID(kid) not in box.kids:
                raise CheckFailed(f"{ex.check}: ClearKey PSSH does not list KID {kid}")
            n += 1
    if not n:
        raise CheckSkipped("no ClearKey PSSH was requested")
    return f"{n} box(es)"


@register_check("hls-signaling", hint=VALIDATION_HINTS["hls"],
                title="HLS signaling lines parse; media and master agree; METHOD fits")
def hls_signaling(ctx: RunContext, v: SpekeVersion) -> str:
    n = 0
    for ex in _answers(ctx, v):
        for drm in ex.request.placeholders:
            pairs = zip(signals(ex, drm, Placeholder.HLS_MEDIA),
                        signals(ex, drm, Placeholder.HLS_MASTER), strict=False)
            for (kid, d, media), (_, _, master) in pairs:
                m = _b64(_need(ex, kid, d, media, f"{drm.label} HLSSignalingData media"), "HLS")
                s = _b64(_need(ex, kid, d, master, f"{drm.label} HLSSignalingData master"),
                         "HLS")
                try:
                    check_hls(m.decode("utf-8"), s.decode("utf-8"), drm,
                              ex.request.contract.scheme, kid)
                except (SpekePackagerError, UnicodeDecodeError) as exc:
                    raise CheckFailed(f"{ex.check}: {exc}") from None
                n += 1
            for kid, d, text in signals(ex, drm, Placeholder.URI_EXT_X_KEY):  # v1
                _b64(_need(ex, kid, d, text, f"{drm.label} URIExtXKey"), "URIExtXKey")
                n += 1
    if not n:
        raise CheckSkipped("no HLS signaling was requested")
    return f"{n} signal(s)"


@register_check("explicit-iv-echo", hint="echo explicitIV unchanged (the packager encrypts "
                                         "with it); never the content key",
                title="explicitIV sent is echoed unchanged")
def explicit_iv_echo(ctx: RunContext, v: SpekeVersion) -> str:
    n = 0
    for ex in _answers(ctx, v):
        assert ex.doc is not None
        sent = {str(k.kid): k.explicit_iv for k in ex.request.keys if k.explicit_iv}
        for ck in ex.doc.content_keys:
            kid = ck.kid.strip().lower()
            if kid not in sent:
                continue
            if ck.explicit_iv is None:
                raise CheckFailed(f"{ex.check}: explicitIV not echoed (KID {kid})")
            got = _b64(ck.explicit_iv, "explicitIV")
            if got == ex.keys.get(kid):
                raise CheckFailed(f"{ex.check}: explicitIV is the content key (KID {kid})")
            if got != sent[kid]:
                raise CheckFailed(f"{ex.check}: explicitIV changed (KID {kid})")
            n += 1
    if not n:
        raise CheckSkipped("no request carried an explicitIV")
    return f"{n} IV(s) echoed"


@register_check("time-budget", hint="answer within the budget (--budget); API Gateway cuts at "
                                    "29 s, packagers time out sooner",
                title="every answer within the time budget")
def time_budget(ctx: RunContext, v: SpekeVersion) -> str:
    sent = ctx.of(v)
    if not sent:
        raise CheckSkipped("no request of this version was sent")
    slow = max(sent, key=lambda e: e.seconds)
    if slow.seconds > ctx.options.budget:
        raise CheckFailed(f"{slow.check}: answered in {slow.seconds:.2f} s, over the "
                          f"{ctx.options.budget:g} s budget")
    return f"slowest {slow.seconds * 1000:.0f} ms"
