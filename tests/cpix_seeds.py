"""CPIX documents every clone can make (no ../shared): the fuzzers' seeds beside the public
vectors. SPEKE v1/v2 requests built by hand with lxml (tests/keyserver/_req.py) and answers
with clear and with encrypted content keys written as XML text (tests/keys/test_generated_cpix.py)."""

from __future__ import annotations

import base64
import functools
import os
import tempfile
import uuid
from pathlib import Path

from tests.keys.test_generated_cpix import KEYS, encrypted_cpix, make_recipient
from tests.keyserver import _req


def _clear_answer() -> bytes:
    keys = "".join(
        f'<cpix:ContentKey kid="{kid}" commonEncryptionScheme="cbcs"><cpix:Data><pskc:Secret>'
        f"<pskc:PlainValue>{base64.b64encode(key).decode()}</pskc:PlainValue>"
        f"</pskc:Secret></cpix:Data></cpix:ContentKey>" for kid, key in KEYS.items())
    drm = "".join(
        f'<cpix:DRMSystem kid="{kid}" systemId="{_req.WIDEVINE}"><cpix:PSSH>AAAAAA==</cpix:PSSH>'
        f"</cpix:DRMSystem>" for kid in KEYS)
    return (f'<cpix:CPIX xmlns:cpix="urn:dashif:org:cpix" '
            f'xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc" contentId="seed" version="2.3">'
            f"<cpix:ContentKeyList>{keys}</cpix:ContentKeyList>"
            f"<cpix:DRMSystemList>{drm}</cpix:DRMSystemList></cpix:CPIX>").encode()


@functools.cache
def cpix_seeds() -> tuple[bytes, ...]:
    with tempfile.TemporaryDirectory() as d:
        rcpt = make_recipient(Path(d), "seed")
    return (
        _req.v2_request(),
        _req.v2_request(version="2.3", scheme="cenc",
                        systems=(_req.WIDEVINE, _req.PLAYREADY), period=7),
        _req.v2_request(scheme=None, kids=((uuid.UUID(int=5), "ALL"),),
                        explicit_iv=os.urandom(16), cert_der=(rcpt.der,)),
        _req.v1_request(),
        _req.v1_request(period=None, cert_der=(rcpt.der,)),
        _clear_answer(),
        encrypted_cpix(KEYS, [rcpt], layout="A"),
        encrypted_cpix(KEYS, [rcpt], layout="B"),
    )


def speke_request_seeds() -> tuple[bytes, ...]:
    return cpix_seeds()[:5]
