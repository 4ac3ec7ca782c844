"""Strict validation of a SPEKE answer against its request (speke.md §5) -> :class:`KeySet`.

Every failed check raises :class:`~speke_packager.errors.CpixValidationError` whose ``check``
names the rule (``version-echo``, ``kid``, ``pssh`` ...) and whose ``kid`` names the key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from uuid import UUID

from ..constants import SPEKE_USER_AGENT_HEADER, SPEKE_VERSION_HEADER, SYSTEM_ID_TO_DRM, DrmSystem
from ..model import ContentKey, DrmSignal, KeyEntry, KeySet
from .cpix.model import CpixContentKey, CpixDocument
from .drm_signals import canon_kid, decode_b64, decode_drm, drm_signal, fail, hls_iv
from .envelope import DeliveryKey, decrypt_content_keys, select_delivery_data
from .request import SpekeRequest

__all__ = ["validate_response"]

log = logging.getLogger(__name__)


# ---- the whole answer ------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    low = name.lower()
    for k, v in headers.items():
        if k.lower() == low:
            return v
    return None


def _check_root(req: SpekeRequest, doc: CpixDocument) -> None:
    v = req.version
    if v.is_v2:
        if doc.content_id != req.content_id:
            raise fail("content-id", f"CPIX@contentId {doc.content_id!r} is not the requested "
                                     f"{req.content_id!r}")
        if doc.version != v.cpix_version:
            raise fail("version-echo", f"CPIX@version {doc.version!r} is not the requested "
                                       f"{v.cpix_version!r}")
        for name in ("ContentKeyList", "DRMSystemList", "ContentKeyUsageRuleList"):
            n = doc.list_counts.get(name, 0)
            if n != 1:
                raise fail("lists", f"answer has {n} {name} elements, expected exactly one")
    elif doc.id != req.content_id:
        raise fail("content-id", f"CPIX@id {doc.id!r} is not the requested {req.content_id!r}")


def _map_kids(req: SpekeRequest, doc: CpixDocument) -> dict[str, str]:
    """answer KID -> requested KID (both canonical lower case), honouring KID override."""
    requested = {str(k.kid): k for k in req.keys}
    got = [canon_kid(ck.kid) for ck in doc.content_keys]
    if len(got) != len(set(got)):
        dup = next(k for k in got if got.count(k) > 1)
        raise fail("duplicate-kid", "the answer lists a KID twice", dup)
    if len(got) != len(requested):
        extra = [k for k in got if k not in requested]
        raise fail("key-count", f"answer has {len(got)} content keys, {len(requested)} "
                                "were requested", extra[0] if extra else None)
    mapping: dict[str, str] = {k: k for k in got if k in requested}
    unmapped_req = [k for k in requested if k not in mapping.values()]
    for k in got:
        if k in mapping:
            continue
        if not req.version.is_v2:
            if len(unmapped_req) == 1:
                mapping[k] = unmapped_req[0]
                continue
            # several key periods in one v1 request: the override is told by its period
            pids = {pid for r in doc.rule_for(k) for pid in r.period_ids}
            cands = [r for r in unmapped_req
                     if (p := requested[r].period) is not None and p.period_id in pids]
            if len(cands) != 1:
                raise fail("kid", "unexpected KID in the answer", k)
            mapping[k] = cands[0]
            unmapped_req.remove(cands[0])
            log.info("key server replaced KID %s with %s", cands[0], k)
            continue
        rules = doc.rule_for(k)
        ttypes = {r.intended_track_type for r in rules}
        cands = [r for r in unmapped_req if requested[r].track_type in ttypes]
        if len(cands) != 1:
            raise fail("kid", "answer KID matches no requested key (or several)", k)
        mapping[k] = cands[0]
        unmapped_req.remove(cands[0])
        log.info("key server replaced KID %s with %s", cands[0], k)
    return mapping


def _check_rules(req: SpekeRequest, doc: CpixDocument, mapping: dict[str, str]) -> None:
    requested = {str(k.kid): k for k in req.keys}
    sent_periods = {k.period.period_id: k.period for k in req.keys if k.period}
    got_periods = {p.id: p for p in doc.periods}
    if set(sent_periods) != set(got_periods):
        raise fail("periods", f"answer periods {sorted(map(str, got_periods))} differ from "
                              f"the requested {sorted(sent_periods)}")
    for pid, p in sent_periods.items():
        g = got_periods[pid]
        if g.index != p.index:
            raise fail("periods", f"period {pid} index changed from {p.index} to {g.index}")
    if not req.version.is_v2 and not sent_periods:
        return
    for got_kid, req_kid in mapping.items():
        rk = requested[req_kid]
        rules = doc.rule_for(got_kid)
        if len(rules) != 1:
            raise fail("usage-rules", f"answer has {len(rules)} usage rules for the key, "
                                      "expected one", got_kid)
        r = rules[0]
        if req.version.is_v2 and r.intended_track_type != rk.track_type:
            raise fail("usage-rules", f"intendedTrackType {r.intended_track_type!r} is not "
                                      f"the requested {rk.track_type!r}", got_kid)
        want_p = (rk.period.period_id,) if rk.period else ()
        if tuple(r.period_ids) != want_p:
            raise fail("usage-rules", "KeyPeriodFilter changed", got_kid)
        if req.version.is_v2 and (r.video_filters != rk.video_filters
                                  or r.audio_filters != rk.audio_filters):
            raise fail("usage-rules", "Video/AudioFilter changed", got_kid)


def _key_value(ck: CpixContentKey, kid: str, req: SpekeRequest,
               decrypted: dict[str, bytes] | None) -> bytes:
    if ck.secret_count != 1:
        raise fail("key-value", f"content key has {ck.secret_count} Data/Secret elements, "
                                "expected one", kid)
    if ck.value_count != 1:
        raise fail("key-value", "Secret needs exactly one of PlainValue/EncryptedValue", kid)
    sent_delivery = req.contract.delivery_cert_der is not None
    if ck.plain_value is not None:
        if sent_delivery:
            raise fail("encryption", "content key came back in clear although encrypted keys "
                                     "were requested", kid)
        if not ck.plain_value:
            raise fail("key-value", "PlainValue is empty", kid)
        value = decode_b64(ck.plain_value, "base64", "PlainValue", kid)
    else:
        if not sent_delivery:
            raise fail("encryption", "content key is encrypted but no delivery certificate "
                                     "was sent", kid)
        if decrypted is None or kid not in decrypted:
            raise fail("encryption", "encrypted content key could not be decrypted", kid)
        value = decrypted[kid]
    if len(value) != 16:
        raise fail("key-length", f"content key is {len(value)} bytes, not 16", kid)
    return value


def validate_response(
    request: SpekeRequest, doc: CpixDocument, *,
    headers: Mapping[str, str] | None = None,
    delivery_key: DeliveryKey | None = None,
    strict: bool = True,
) -> KeySet:
    """Check ``doc`` (the parsed answer) against ``request`` and return the key set.

    ``headers`` are the HTTP response headers (None: offline document, header checks skipped).
    ``delivery_key`` decrypts encrypted content keys (required when a certificate was sent)."""
    v = request.version
    if headers is not None and v.is_v2:
        echo = _header(headers, SPEKE_VERSION_HEADER)
        if echo is None:
            raise fail("version-echo", "answer has no X-Speke-Version header (v1-only server?)")
        if echo.strip() != v.header:
            raise fail("version-echo", f"answer X-Speke-Version {echo.strip()[:20]!r} is not "
                                       f"the requested {v.header!r}")
        if _header(headers, SPEKE_USER_AGENT_HEADER) is None:
            log.warning("SPEKE answer has no X-Speke-User-Agent header")
        ctype = (_header(headers, "content-type") or "").split(";")[0].strip().lower()
        if ctype not in ("application/xml", "text/xml"):
            log.warning("SPEKE answer Content-Type is %r, not application/xml", ctype)
    _check_root(request, doc)
    mapping = _map_kids(request, doc)
    _check_rules(request, doc, mapping)
    requested = {str(k.kid): k for k in request.keys}
    scheme = request.contract.scheme

    decrypted: dict[str, bytes] | None = None
    if request.contract.delivery_cert_der is not None:
        if delivery_key is None:
            raise fail("encryption", "encrypted keys were requested but no delivery key is "
                                     "available to decrypt them")
        if delivery_key.certificate_der != request.contract.delivery_cert_der:
            raise fail("encryption", "the delivery key does not match the certificate sent")
        if not doc.has_delivery_data_list:
            raise fail("encryption", "answer has no DeliveryDataList although encrypted keys "
                                     "were requested")
        select_delivery_data(doc, delivery_key)
        decrypted = {canon_kid(k): val for k, val in decrypt_content_keys(doc, delivery_key)
                     .items()}

    entries: list[KeyEntry] = []
    seen_values: dict[bytes, str] = {}
    for ck in doc.content_keys:
        kid = canon_kid(ck.kid)
        rk = requested[mapping[kid]]
        if v.is_v2 and ck.common_encryption_scheme != scheme.cpix_scheme:
            raise fail("scheme", f"commonEncryptionScheme {ck.common_encryption_scheme!r} is "
                                 f"not the requested {scheme.cpix_scheme!r}", kid)
        value = _key_value(ck, kid, request, decrypted)
        if strict:
            if value == bytes(16):
                raise fail("strict", "content key is all zero", kid)
            if value in seen_values:
                raise fail("strict", f"content key is the same as that of {seen_values[value]}",
                           kid)
            seen_values[value] = kid
        iv: bytes | None = None
        if ck.explicit_iv is not None:
            iv = decode_b64(ck.explicit_iv, "explicit-iv", "explicitIV", kid)
            if len(iv) != 16:
                raise fail("explicit-iv", f"explicitIV is {len(iv)} bytes, not 16", kid)
            if iv == value:
                raise fail("explicit-iv", "explicitIV equals the content key" + (
                    " instead of the one sent" if rk.explicit_iv is not None else "; send our "
                    "own IV with --explicit-iv (EncryptionContract(explicit_iv=True))"), kid)
        if rk.explicit_iv is not None and iv is None:  # ignored: use ours (conformance fails)
            log.warning("key server did not echo the explicitIV sent for KID %s; using ours", kid)
            iv = rk.explicit_iv
        elif rk.explicit_iv is not None and iv != rk.explicit_iv:
            raise fail("explicit-iv", "explicitIV differs from the one sent", kid)

        systems = doc.drm_for(kid)
        signals: list[DrmSignal] = []
        want_hls = any(p.value.startswith("hls") for p in request.contract.packaging)
        for drm, wanted in request.placeholders.items():
            mine = [d for d in systems if _same_system(d.system_id, drm)]
            if len(mine) != 1:
                raise fail("drm-system", f"answer has {len(mine)} DRMSystem elements for "
                                         f"{drm.label}, expected one", kid)
            decoded = decode_drm(mine[0], drm, wanted, version=v, scheme=scheme, kid=kid)
            signals.append(drm_signal(drm, decoded, version=v, scheme=scheme, iv=iv,
                                      want_hls=want_hls))
        if iv is None:  # no explicitIV: the IV of the key server's HLS signaling, if any
            iv = hls_iv(signals, kid)
        for d in systems:
            if not any(_same_system(d.system_id, drm) for drm in request.placeholders):
                log.warning("key server added an unrequested DRM system %s for KID %s",
                            d.system_id[:40], kid)
        entries.append(KeyEntry(
            key=ContentKey(kid=UUID(kid), key=value, iv=iv),
            track_type=rk.track_type,
            period=rk.period,
            video_filters=rk.video_filters,
            audio_filters=rk.audio_filters,
            drm=tuple(signals),
        ))
    for d in doc.drm_systems:
        if canon_kid(d.kid) not in mapping:
            raise fail("drm-system", "DRMSystem refers to a KID that is not in the answer",
                       canon_kid(d.kid))
    return KeySet(content_id=request.content_id, scheme=scheme, entries=tuple(entries),
                  version=v)


def _same_system(system_id: str, drm: DrmSystem) -> bool:
    try:
        return SYSTEM_ID_TO_DRM.get(UUID(system_id)) is drm
    except ValueError:
        return False
