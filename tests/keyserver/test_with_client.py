"""The project's own SPEKE client (strict validation) against the key server: every version,
DRM system, preset, key rotation and encrypted keys; every fault is caught by the client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from speke_packager.constants import DrmSystem, Packaging, Scheme, SpekeVersion
from speke_packager.errors import (
    CpixError,
    CpixIntegrityError,
    CpixValidationError,
    KeyAcquisitionError,
    KeyAuthError,
    KeyServerError,
    KeyServerHTTPError,
    KeyServerTimeout,
)
from speke_packager.keys import DeliveryKey, EncryptionContract, SigV4Auth, SpekeClient
from speke_packager.keyserver import KeyServer
from speke_packager.model import KeyPeriod, KeySet

from ._check import expected_key
from .conftest import CertPair

SEED = "client-tests"
V, A = "PRESET-VIDEO-1", "PRESET-AUDIO-1"


@pytest.fixture(scope="module")
def ks() -> Iterator[KeyServer]:
    with KeyServer(allow_fault_header=True, seed=SEED) as server:
        yield server


def assert_keys(ks_: KeySet, content_id: str = "movie-1", seed: str = SEED) -> None:
    assert len(ks_) >= 1
    for e in ks_:
        assert e.key.key == expected_key(seed, content_id, e.kid)
        assert e.key.key != expected_key(seed + "x", content_id, e.kid)


DRM_CASES = [
    ((DrmSystem.WIDEVINE,), (Packaging.DASH, Packaging.HLS_FMP4), Scheme.CBCS),
    ((DrmSystem.WIDEVINE,), (Packaging.DASH,), Scheme.CENC),
    ((DrmSystem.PLAYREADY,), (Packaging.DASH, Packaging.HLS_FMP4), Scheme.CBCS),
    ((DrmSystem.PLAYREADY,), (Packaging.DASH,), Scheme.CENC),
    ((DrmSystem.FAIRPLAY,), (Packaging.HLS_FMP4,), Scheme.CBCS),
    ((DrmSystem.FAIRPLAY,), (Packaging.HLS_TS,), Scheme.SAMPLE_AES),
    ((DrmSystem.CLEARKEY,), (Packaging.DASH, Packaging.HLS_FMP4), Scheme.CENC),
    ((DrmSystem.AES128,), (Packaging.HLS_TS,), Scheme.AES_128),
    ((DrmSystem.AES128,), (Packaging.HLS_TS,), Scheme.SAMPLE_AES),
    ((DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.FAIRPLAY),
     (Packaging.DASH, Packaging.HLS_FMP4), Scheme.CBCS),
]


@pytest.mark.parametrize("version", list(SpekeVersion))
@pytest.mark.parametrize(("drm", "packaging", "scheme"), DRM_CASES, ids=[
    "+".join(d.label for d in c[0]) + "/" + "+".join(p.value for p in c[1]) + "/" + c[2].value
    for c in DRM_CASES])
def test_every_version_and_drm(ks: KeyServer, version: SpekeVersion,
                               drm: tuple[DrmSystem, ...], packaging: tuple[Packaging, ...],
                               scheme: Scheme) -> None:
    client = SpekeClient(ks.speke_url, retries=0)
    keys = client.fetch(EncryptionContract(content_id="movie-1", drm=drm, packaging=packaging,
                                           scheme=scheme, version=version))
    assert_keys(keys)
    for e in keys:
        for d in drm:
            assert e.signal(d) is not None


PRESETS = ([(f"PRESET-VIDEO-{i}", A) for i in range(1, 9)]
           + [(V, f"PRESET-AUDIO-{i}") for i in (2, 3)]
           + [("SHARED", "SHARED"), (V, "UNENCRYPTED"), ("UNENCRYPTED", A)])


@pytest.mark.parametrize(("video", "audio"), PRESETS)
@pytest.mark.parametrize("version", [SpekeVersion.V2_0, SpekeVersion.V2_1])
def test_every_preset(ks: KeyServer, video: str, audio: str, version: SpekeVersion) -> None:
    client = SpekeClient(ks.speke_url, retries=0)
    keys = client.fetch(EncryptionContract(
        content_id="movie-1", drm=(DrmSystem.WIDEVINE, DrmSystem.PLAYREADY),
        packaging=(Packaging.DASH,), scheme=Scheme.CBCS, version=version,
        video_preset=video, audio_preset=audio))
    assert_keys(keys)
    assert len({e.kid for e in keys}) == len(keys)


@pytest.mark.parametrize("version", list(SpekeVersion))
def test_rotation(ks: KeyServer, version: SpekeVersion) -> None:
    client = SpekeClient(ks.speke_url, retries=0)
    contract = EncryptionContract(content_id="live-1", drm=(DrmSystem.WIDEVINE,),
                                  packaging=(Packaging.DASH,), scheme=Scheme.CENC,
                                  version=version)
    keys = client.fetch_periods(contract, [KeyPeriod(index=i) for i in (100, 101, 102)])
    assert_keys(keys, "live-1")
    assert {e.period.index for e in keys if e.period} == {100, 101, 102}


@pytest.mark.parametrize("bits", [2048, 3072, 4096])
@pytest.mark.parametrize("layout", ["A", "B"])
@pytest.mark.parametrize("version", list(SpekeVersion))
def test_encrypted_keys_with_client(bits: int, layout: str, version: SpekeVersion,
                                    delivery_certs: dict[int, CertPair]) -> None:
    pair = delivery_certs[bits]
    dk = DeliveryKey(certificate_der=pair.cert_der, private_key=pair.private_key)
    with KeyServer(allow_fault_header=True, seed=SEED, mac_layout=layout) as server:
        client = SpekeClient(server.speke_url, retries=0, delivery_key=dk)
        keys = client.fetch(EncryptionContract(content_id="movie-1", drm=(DrmSystem.WIDEVINE,),
                                               packaging=(Packaging.DASH,), version=version))
    assert_keys(keys)


def test_explicit_iv_echoed(ks: KeyServer) -> None:
    client = SpekeClient(ks.speke_url, retries=0)
    keys = client.fetch(EncryptionContract(content_id="movie-1", drm=(DrmSystem.AES128,),
                                           packaging=(Packaging.HLS_TS,), scheme=Scheme.AES_128,
                                           explicit_iv=True))
    assert all(e.key.iv is not None and len(e.key.iv) == 16 for e in keys)


def _contract(**kw: object) -> EncryptionContract:
    base: dict[str, object] = dict(content_id="movie-1", drm=(DrmSystem.WIDEVINE,
                                                              DrmSystem.FAIRPLAY),
                                   packaging=(Packaging.DASH, Packaging.HLS_FMP4))
    base.update(kw)
    return EncryptionContract(**base)  # type: ignore[arg-type]


FAULTS: list[tuple[str, type[Exception]]] = [
    ("wrong-kid", CpixValidationError),
    ("change-scheme", CpixValidationError),
    ("change-rules", CpixValidationError),
    ("change-content-id", CpixValidationError),
    ("pssh-mismatch", CpixValidationError),
    ("version=1.0", CpixValidationError),
    ("version=none", CpixValidationError),
    ("drop=PSSH", CpixValidationError),
    ("drop=HLSSignalingData", CpixValidationError),
    ("empty=ContentProtectionData", CpixValidationError),
    ("drop=ContentKeyUsageRuleList", CpixError),
    ("truncate", CpixError),
    ("status=500", KeyServerHTTPError),
    ("status=422", KeyServerHTTPError),
    ("reset", KeyServerError),
]


@pytest.mark.parametrize(("fault", "error"), FAULTS)
def test_client_catches_fault(fault: str, error: type[Exception]) -> None:
    with KeyServer(allow_fault_header=True, seed=SEED, faults=[fault]) as server:
        client = SpekeClient(server.speke_url, retries=0)
        with pytest.raises(error):
            client.fetch(_contract())
    with KeyServer(allow_fault_header=True, seed=SEED) as server:  # control: the same request succeeds without it
        assert_keys(SpekeClient(server.speke_url, retries=0).fetch(_contract()))


def test_client_timeout_on_delay() -> None:
    with KeyServer(allow_fault_header=True, faults=["delay=2"]) as server:
        client = SpekeClient(server.speke_url, retries=0, timeout=(2.0, 0.5))
        with pytest.raises(KeyServerTimeout):
            client.fetch(_contract())


@pytest.mark.parametrize(("fault", "error"), [("bad-mac", CpixIntegrityError),
                                              ("plain-key", CpixValidationError)])
def test_client_catches_encryption_faults(fault: str, error: type[Exception],
                                          delivery_certs: dict[int, CertPair]) -> None:
    pair = delivery_certs[2048]
    dk = DeliveryKey(certificate_der=pair.cert_der, private_key=pair.private_key)
    with KeyServer(allow_fault_header=True, seed=SEED, faults=[fault]) as server:
        client = SpekeClient(server.speke_url, retries=0, delivery_key=dk)
        with pytest.raises(error):
            client.fetch(_contract())


def test_client_retries_then_fails_on_500(ks: KeyServer) -> None:
    with KeyServer(allow_fault_header=True, faults=["status=503"]) as server:
        client = SpekeClient(server.speke_url, retries=2, backoff=0.0, sleep=lambda s: None)
        with pytest.raises(KeyServerHTTPError) as exc:
            client.fetch(_contract())
        assert exc.value.status == 503
        assert client.attempts == 3


def test_client_sigv4_against_server() -> None:
    creds = ("AKIDCLIENT", "client-secret-key")
    with KeyServer(allow_fault_header=True, seed=SEED, require_sigv4=True, sigv4_credentials=creds) as server:
        good = SpekeClient(server.speke_url, retries=0,
                           auth=SigV4Auth("eu-west-1", credentials=creds))
        assert_keys(good.fetch(_contract()))
        bad = SpekeClient(server.speke_url, retries=0,
                          auth=SigV4Auth("eu-west-1", credentials=("AKIDCLIENT", "nope")))
        with pytest.raises((KeyAuthError, KeyServerHTTPError, KeyAcquisitionError)):
            bad.fetch(_contract())


def test_explicit_iv_signalled_in_cbcs_lines(ks: KeyServer) -> None:
    client = SpekeClient(ks.speke_url, retries=0)
    keys = client.fetch(EncryptionContract(
        content_id="movie-1", drm=(DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.FAIRPLAY),
        packaging=(Packaging.HLS_FMP4,), scheme=Scheme.CBCS, explicit_iv=True))
    for e in keys:
        assert e.key.iv is not None
        for drm in (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY):
            sig = e.signal(drm)
            assert sig is not None and sig.hls_media is not None
            assert f"IV=0x{e.key.iv.hex()}" in sig.hls_media
        fp = e.signal(DrmSystem.FAIRPLAY)
        assert fp is not None and fp.hls_media is not None and "IV=" not in fp.hls_media
