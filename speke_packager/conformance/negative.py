"""Requests a SPEKE v2 key server must refuse with a 4xx and the SPEKE v2 error text
(speke.md §11). Each takes a valid request and breaks one rule."""

from __future__ import annotations

from collections.abc import Callable

from lxml import etree

from ..constants import NS_CPIX, DrmSystem, Packaging, Scheme, SpekeVersion
from .model import V2_VERSIONS, CheckFailed, CheckSkipped, Exchange, register_check
from .runner import RunContext

__all__: list[str] = []

C = f"{{{NS_CPIX}}}"
WV, PR, FP, CK = DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.FAIRPLAY, DrmSystem.CLEARKEY
_HINT = ("SPEKE v2 request errors are 4xx (422 fits all) with the fixed SPEKE v2 error text, "
         "never 200 and not 5xx")

Mutation = Callable[[etree._Element], None]


def _send(ctx: RunContext, check: str, v: SpekeVersion, *, mutate: Mutation | None = None,
          header: str | None = None, drm: tuple[DrmSystem, ...] | None = None) -> Exchange:
    if drm is not None:
        c = ctx.contract(check, v, drm, (Packaging.HLS_FMP4,), Scheme.CBCS)
    elif ctx.wants(Packaging.DASH) and ctx.drms(WV, PR, CK):
        c = ctx.contract(check, v, ctx.drms(WV, PR, CK)[:1], (Packaging.DASH,), Scheme.CBCS)
    else:
        c = ctx.contract(check, v, ctx.drms(WV, PR, FP, CK)[:1], (Packaging.HLS_FMP4,),
                         Scheme.CBCS)
    headers = None
    if header is not None:
        headers = {k: (header if k.lower() == "x-speke-version" else val)
                   for k, val in ctx.client.prepare(c).headers.items()}
    return ctx.send(check, v, c, mutate=mutate, headers=headers, negative=True)


def refused(ex: Exchange, text: str | None) -> str:
    """Pass when ``ex`` was refused with a 4xx carrying ``text``; else :class:`CheckFailed`."""
    said = (ex.error or "")[:160]
    if ex.status is None:
        raise CheckFailed(f"no answer: {said}")
    if ex.status == 200:
        raise CheckFailed("accepted (HTTP 200): this request must be refused", _HINT)
    if not 400 <= ex.status < 500:
        raise CheckFailed(f"refused with HTTP {ex.status}, not a 4xx: {said}", _HINT)
    if text is not None and text not in (ex.error or ""):
        raise CheckFailed(f"HTTP {ex.status} without the SPEKE v2 text {text!r} (said: "
                          f"{said!r})", _HINT)
    return f"HTTP {ex.status}: {said}"


def _keys(root: etree._Element) -> list[etree._Element]:
    return list(root.iter(f"{C}ContentKey"))


def _drop(name: str) -> Mutation:
    def mutate(root: etree._Element) -> None:
        for el in list(root.iter(f"{C}{name}")):
            parent = el.getparent()
            if parent is not None:
                parent.remove(el)
    return mutate


def _no_content_id(root: etree._Element) -> None:
    del root.attrib["contentId"]


def _cpix_version(root: etree._Element) -> None:
    root.set("version", "9.9")


def _no_scheme(root: etree._Element) -> None:
    del _keys(root)[0].attrib["commonEncryptionScheme"]


def _mixed(root: etree._Element) -> None:
    keys = _keys(root)
    if len(keys) < 2:
        raise CheckSkipped("needs two keys")
    keys[0].set("commonEncryptionScheme", "cenc")


def _all_cenc(root: etree._Element) -> None:
    for k in _keys(root):
        k.set("commonEncryptionScheme", "cenc")


def _duplicate_track(root: etree._Element) -> None:
    rules = list(root.iter(f"{C}ContentKeyUsageRule"))
    rules[1].set("intendedTrackType", rules[0].get("intendedTrackType") or "VIDEO")


_CASES: tuple[tuple[str, str, dict[str, object], str | None], ...] = (
    ("refuse-missing-content-id", "no CPIX@contentId", {"mutate": _no_content_id},
     "Missing CPIX@contentId"),
    ("refuse-cpix-version", "CPIX@version 9.9", {"mutate": _cpix_version},
     "Unsupported CPIX@version"),
    ("refuse-speke-version", "X-Speke-Version: 9.9", {"header": "9.9"},
     "Unsupported SPEKE version"),
    ("refuse-missing-scheme", "a ContentKey without commonEncryptionScheme",
     {"mutate": _no_scheme}, "Missing ContentKey@commonEncryptionScheme"),
    ("refuse-mixed-schemes", "cenc and cbcs keys in one document", {"mutate": _mixed},
     "Non compliant ContentKey@commonEncryptionScheme combination"),
    ("refuse-fairplay-cenc", "FairPlay with cenc", {"mutate": _all_cenc, "drm": (FP,)},
     "non compatible with DRMSystem"),
    ("refuse-missing-contract", "no ContentKeyUsageRuleList",
     {"mutate": _drop("ContentKeyUsageRuleList")}, "Missing CPIX encryption contract"),
    ("refuse-duplicate-track-type", "two rules with the same intendedTrackType",
     {"mutate": _duplicate_track}, "Malformed encryption contract"),
    ("refuse-missing-drm-system", "no DRMSystem", {"mutate": _drop("DRMSystem")}, None),
)


def _make(name: str, kw: dict[str, object], text: str | None
          ) -> Callable[[RunContext, SpekeVersion], str]:
    def check(ctx: RunContext, v: SpekeVersion) -> str:
        if kw.get("drm") == (FP,) and FP not in ctx.options.drm:
            raise CheckSkipped("fairplay not among --drm")
        return refused(_send(ctx, name, v, **kw), text)  # type: ignore[arg-type]
    return check


for _name, _title, _kw, _text in _CASES:
    register_check(_name, kind="request", versions=V2_VERSIONS, hint=_HINT,
                   title=f"refuses {_title}")(_make(_name, _kw, _text))
