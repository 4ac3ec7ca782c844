"""The battery's positive requests: each sends real SPEKE requests and checks what only it can
(key counts, periods, encrypted keys, repeatability, header case). The answers are examined
further by the answer checks (:mod:`.answers`)."""

from __future__ import annotations

from ..constants import DrmSystem, Packaging, Scheme, SpekeVersion
from ..errors import SpekePackagerError
from ..keys.envelope import decrypt_content_keys
from ..model import KeyPeriod
from .model import V2_VERSIONS, CheckFailed, CheckSkipped, Exchange, register_check
from .runner import RunContext

__all__ = ["expect_answer"]

WV, PR, FP, CK, AES = (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.FAIRPLAY,
                       DrmSystem.CLEARKEY, DrmSystem.AES128)
DASH, FMP4, TS = Packaging.DASH, Packaging.HLS_FMP4, Packaging.HLS_TS


def expect_answer(ex: Exchange) -> Exchange:
    """``ex`` answered 200 with a parseable CPIX document, else :class:`CheckFailed`."""
    if ex.status is None:
        raise CheckFailed(f"no answer: {ex.error}", "check the URL, TLS and the server's "
                                                    "logs; see --trace DIR")
    if ex.status != 200:
        raise CheckFailed(f"HTTP {ex.status}: {ex.error}", "the server refused a valid "
                                                          "request; its own message is quoted")
    if ex.doc is None:
        raise CheckFailed(f"answer is not a CPIX document: {ex.parse_error}",
                          "answer with the completed CPIX document, application/xml")
    return ex


def _base(ctx: RunContext, check: str, v: SpekeVersion, **kw: object) -> Exchange:
    """The simplest request the options allow: DASH with the DASH DRMs, else HLS fMP4."""
    dash = ctx.drms(WV, PR, CK)
    if ctx.wants(DASH) and dash:
        c = ctx.contract(check, v, dash[:1], (DASH,), Scheme.CENC, **kw)
    else:
        c = ctx.contract(check, v, ctx.drms(WV, PR, FP, CK)[:1], (FMP4,), Scheme.CBCS, **kw)
    return ctx.send(check, v, c)


def _per_drm(ctx: RunContext, check: str, v: SpekeVersion, drms: tuple[DrmSystem, ...], *,
             packaging: Packaging, scheme: Scheme) -> str:
    """One request per DRM system (a vendor's gap shows under its name); fails on the first
    DRM that was not answered, after trying them all."""
    if not ctx.wants(packaging):
        raise CheckSkipped(f"{packaging.value} not among --packaging")
    if not drms:
        raise CheckSkipped("no selected DRM system fits this output")
    problems: list[str] = []
    keys = 0
    for drm in drms:
        try:
            ex = expect_answer(ctx.send(check, v, ctx.contract(check, v, (drm,), (packaging,),
                                                               scheme)))
            keys = len(ex.request.keys)
        except CheckFailed as f:
            problems.append(f"{drm.label}: {f.reason}")
    if problems:
        raise CheckFailed("; ".join(problems), "the server refused a valid request (its own "
                                               "message is quoted); drop a DRM it does not "
                                               "offer with --drm")
    return f"{keys} key(s) for each of {', '.join(d.label for d in drms)}"


@register_check("dash", kind="request", title="DASH requests: Widevine, PlayReady, ClearKey, cenc")
def dash(ctx: RunContext, v: SpekeVersion) -> str:
    return _per_drm(ctx, "dash", v, ctx.drms(WV, PR, CK), packaging=DASH,
                    scheme=Scheme.CENC)


@register_check("hls-fmp4", kind="request",
                title="HLS fMP4 requests: Widevine, PlayReady, FairPlay, ClearKey, cbcs")
def hls_fmp4(ctx: RunContext, v: SpekeVersion) -> str:
    return _per_drm(ctx, "hls-fmp4", v, ctx.drms(WV, PR, FP, CK), packaging=FMP4,
                    scheme=Scheme.CBCS)


@register_check("hls-ts", kind="request", title="HLS MPEG-TS SAMPLE-AES requests: FairPlay, "
                                                 "aes-128 (identity)")
def hls_ts(ctx: RunContext, v: SpekeVersion) -> str:
    return _per_drm(ctx, "hls-ts", v, ctx.drms(FP, AES), packaging=TS,
                    scheme=Scheme.SAMPLE_AES)


@register_check("hls-aes128", kind="request", title="HLS AES-128 request (whole segments)")
def hls_aes128(ctx: RunContext, v: SpekeVersion) -> str:
    if not ctx.wants(TS):
        raise CheckSkipped("hls-ts not among --packaging")
    c = ctx.contract("hls-aes128", v, ctx.drms(AES), (TS,), Scheme.AES_128)
    expect_answer(ctx.send("hls-aes128", v, c))
    return "aes-128 key delivery"


@register_check("presets", kind="request", versions=V2_VERSIONS,
                title="v2 presets: PRESET-VIDEO-3 + AUDIO-2 (SD/HD/UHD) and VIDEO-5 + AUDIO-3",
                hint="one ContentKey per intendedTrackType, each with its own KID")
def presets(ctx: RunContext, v: SpekeVersion) -> str:
    counts = []
    for video, audio in (("PRESET-VIDEO-3", "PRESET-AUDIO-2"), ("PRESET-VIDEO-5",
                                                                  "PRESET-AUDIO-3")):
        ex = expect_answer(_base(ctx, "presets", v, video_preset=video, audio_preset=audio))
        assert ex.doc is not None
        kids = [ck.kid.strip().lower() for ck in ex.doc.content_keys]
        if len(kids) != len(ex.request.keys) or len(set(kids)) != len(kids):
            raise CheckFailed(f"{video} + {audio}: {len(ex.request.keys)} keys requested, "
                              f"{len(set(kids))} distinct KIDs in {len(kids)} keys answered")
        counts.append(str(len(kids)))
    return f"{' and '.join(counts)} keys"


def _period(v: SpekeVersion) -> KeyPeriod:
    if v is SpekeVersion.V1_0:
        return KeyPeriod(1700)
    if v is SpekeVersion.V2_1:
        return KeyPeriod(42, start="2025-01-01T00:42:00Z", end="2025-01-01T00:43:00Z")
    return KeyPeriod(42)


@register_check("key-period", kind="request",
                title="key rotation: v1 period, v2 ContentKeyPeriodList, v2.1 start/end",
                hint="echo ContentKeyPeriodList unchanged and keep every KeyPeriodFilter")
def key_period(ctx: RunContext, v: SpekeVersion) -> str:
    p = _period(v)
    ex = expect_answer(_base(ctx, "key-period", v, period=p))
    assert ex.doc is not None
    found = [q for q in ex.doc.periods if q.id == p.period_id]
    if not found:
        raise CheckFailed(f"the answer has no ContentKeyPeriod {p.period_id!r}")
    q = found[0]
    if q.index != p.index:
        raise CheckFailed(f"ContentKeyPeriod {p.period_id} index {q.index} is not {p.index}")
    if p.start and (q.start != p.start or q.end != p.end):
        raise CheckFailed(f"v2.1 start/end not echoed (got {q.start!r}/{q.end!r})")
    for rule in ex.doc.usage_rules:
        if p.period_id not in rule.period_ids:
            raise CheckFailed(f"usage rule of KID {rule.kid} lost its KeyPeriodFilter")
    return f"period {p.index}" + (" with start/end" if p.start else "")


@register_check("encrypted-keys", kind="request",
                title="encrypted content keys (DeliveryDataList, RSA-OAEP, AES-256-CBC, HMAC)",
                hint="encrypt every key to the DeliveryData certificate (speke.md §6)")
def encrypted_keys(ctx: RunContext, v: SpekeVersion) -> str:
    dash_drms = ctx.drms(WV, PR, CK)
    if ctx.wants(DASH) and dash_drms:
        c = ctx.contract("encrypted-keys", v, dash_drms[:1], (DASH,), Scheme.CENC)
    else:
        c = ctx.contract("encrypted-keys", v, ctx.drms(WV, PR, FP, CK)[:1], (FMP4,),
                         Scheme.CBCS)
    ex = expect_answer(ctx.send("encrypted-keys", v, c, encrypted=True))
    assert ex.doc is not None and ctx.delivery_key is not None
    plain = [ck.kid for ck in ex.doc.content_keys if ck.plain_value]
    if plain:
        raise CheckFailed(f"PlainValue key(s) for {plain[0]} although encrypted keys were "
                          "requested")
    try:
        got = decrypt_content_keys(ex.doc, ctx.delivery_key)
    except SpekePackagerError as exc:
        raise CheckFailed(f"cannot decrypt the keys: {exc}") from None
    if len(got) != len(ex.request.keys):
        raise CheckFailed(f"{len(got)} of {len(ex.request.keys)} keys decrypted")
    return f"{len(got)} key(s) decrypted, MACs verified"


@register_check("same-key-again", kind="request",
                title="the same request twice gives the same key for each KID",
                hint="keys must be stable per (content id, KID): a retry or restart asks again")
def same_key_again(ctx: RunContext, v: SpekeVersion) -> str:
    first = expect_answer(_base(ctx, "same-key-again", v))
    second = expect_answer(_base(ctx, "same-key-again", v))
    if not first.keys or not second.keys:
        raise CheckFailed("the answers hold no readable content keys")
    for kid, key in first.keys.items():
        if second.keys.get(kid) != key:
            raise CheckFailed(f"the key of KID {kid} changed between two identical requests")
    return f"{len(first.keys)} key(s) stable"


@register_check("header-case", kind="request", versions=V2_VERSIONS,
                title="X-Speke-Version is matched in any letter case",
                hint="HTTP header names are case-insensitive (RFC 9110): read "
                     "X-Speke-Version whatever its case")
def header_case(ctx: RunContext, v: SpekeVersion) -> str:
    dash_drms = ctx.drms(WV, PR, CK)
    if ctx.wants(DASH) and dash_drms:
        c = ctx.contract("header-case", v, dash_drms[:1], (DASH,), Scheme.CENC)
    else:
        c = ctx.contract("header-case", v, ctx.drms(WV, PR, FP, CK)[:1], (FMP4,), Scheme.CBCS)
    sent = dict(ctx.client.prepare(c).headers)
    headers = {("X-SPEKE-VERSION" if k.lower() == "x-speke-version" else k): val
               for k, val in sent.items()}
    ex = expect_answer(ctx.send("header-case", v, c, headers=headers))
    assert ex.doc is not None
    if ex.doc.version != v.cpix_version or ex.doc.content_id is None:
        raise CheckFailed("with the header spelled X-SPEKE-VERSION the answer is not a SPEKE "
                          f"{v.value} document (CPIX@version {ex.doc.version!r})")
    echo = ex.header("x-speke-version")
    if echo is None or echo.strip() != v.header:
        raise CheckFailed(f"X-SPEKE-VERSION: {v.header} answered with X-Speke-Version {echo!r}")
    return "X-SPEKE-VERSION understood"
