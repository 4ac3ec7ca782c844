"""The encrypt-vod rules live in the library: ``encrypt_vod`` with a :class:`RawKeys` or
:class:`SpekeKeys` source refuses what the CLI refuses, with the same one-line message, before
anything is written or fetched (the CLI only parses the options and calls it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from speke_packager.constants import DrmSystem, Packaging, Scheme, SpekeVersion
from speke_packager.errors import UsageError
from speke_packager.keys import EncryptionContract, SpekeClient
from speke_packager.model import KeyPeriod
from speke_packager.pipeline import (
    OutputFormat,
    RawKeys,
    SpekeKeys,
    VodOptions,
    encrypt_vod,
    vod_packaging,
)

from .conftest import KEY, KEYSPEC, cli

# Nothing listens here: a rule that let the request through would fail with a key server error.
_DEAD = "http://127.0.0.1:9/speke"


def _contract(*drm: DrmSystem, **kw: object) -> EncryptionContract:
    return EncryptionContract(content_id="c1", drm=drm, **kw)  # type: ignore[arg-type]


def _cli_line(*args: str) -> str:
    res = cli(*args)
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert "\n" not in line and line.startswith("speke-packager: error: ")
    return line.removeprefix("speke-packager: error: ")


def test_raw_keys_only_clearkey() -> None:
    with pytest.raises(UsageError) as ei:
        RawKeys((KEYSPEC,), drm=(DrmSystem.CLEARKEY, DrmSystem.WIDEVINE))
    assert str(ei.value) == ("--drm widevine needs a key server (--speke-url): raw keys can "
                             "only be signalled as ClearKey (--drm clearkey)")
    assert KEY.hex() not in str(ei.value)
    RawKeys((KEYSPEC,), drm=(DrmSystem.CLEARKEY,))  # control: ClearKey is fine
    RawKeys([KEYSPEC])  # and no signaling


def test_raw_keys_checked_when_made() -> None:
    with pytest.raises(UsageError, match="32 hex digits"):
        RawKeys(("00112233445566778899aabbccddeeff:zz",))
    with pytest.raises(UsageError, match="no keys"):
        RawKeys(())


def test_raw_clearkey_cannot_be_signalled_with_sample_aes(packages, tmp_path: Path) -> None:
    out = tmp_path / "out"
    opts = VodOptions(input=packages("hls-ts"), output=out, scheme=Scheme.SAMPLE_AES,
                      key_uri="https://k/key")
    with pytest.raises(UsageError) as ei:
        encrypt_vod(opts, RawKeys((KEYSPEC,), drm=(DrmSystem.CLEARKEY,)))
    msg = "--drm clearkey cannot be signalled in HLS with sample-aes"
    assert str(ei.value) == msg
    assert not out.exists()
    # the CLI says exactly the same
    assert _cli_line("encrypt-vod", str(packages("hls-ts")), "-o", str(tmp_path / "o2"),
                     "--scheme", "sample-aes", "--key", KEYSPEC, "--drm", "clearkey") == msg


def test_speke_drm_checked_before_any_request(media, tmp_path: Path) -> None:
    out = tmp_path / "out"
    source = SpekeKeys(SpekeClient(_DEAD, retries=0), _contract(DrmSystem.FAIRPLAY))
    opts = VodOptions(input=media("h264-aac-mp4"), output=out, scheme=Scheme.CENC,
                      format=OutputFormat.HLS)
    with pytest.raises(UsageError) as ei:
        encrypt_vod(opts, source)
    msg = "--drm fairplay cannot be signalled in HLS with cenc (FairPlay uses cbcs or SAMPLE-AES)"
    assert str(ei.value) == msg
    assert not out.exists()
    assert _cli_line("encrypt-vod", str(media("h264-aac-mp4")), "-o", str(tmp_path / "o2"),
                     "--scheme", "cenc", "--speke-url", _DEAD, "--content-id", "c1",
                     "--drm", "fairplay", "--format", "hls") == msg


def test_speke_keys_refuse_key_rotation(media, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as ei:
        SpekeKeys(SpekeClient(_DEAD), _contract(DrmSystem.WIDEVINE, period=KeyPeriod(index=3)))
    msg = "--key-periods (key rotation) is for live; encrypt-vod uses one key per track type"
    assert str(ei.value) == msg
    assert _cli_line("encrypt-vod", str(media("h264-aac-mp4")), "-o", str(tmp_path / "o"),
                     "--speke-url", _DEAD, "--content-id", "c1", "--key-periods", "3:2") == msg


@pytest.mark.parametrize("fmt, scheme, want", [
    (OutputFormat.BOTH, Scheme.CBCS, (Packaging.DASH, Packaging.HLS_FMP4)),
    (OutputFormat.DASH, Scheme.CENC, (Packaging.DASH,)),
    (OutputFormat.HLS, Scheme.CBCS, (Packaging.HLS_FMP4,)),
    (OutputFormat.HLS, Scheme.AES_128, (Packaging.HLS_TS,)),
    (OutputFormat.HLS, Scheme.SAMPLE_AES, (Packaging.HLS_TS,)),
])
def test_speke_contract_follows_the_output(fmt: OutputFormat, scheme: Scheme,
                                           want: tuple[Packaging, ...]) -> None:
    source = SpekeKeys(SpekeClient(_DEAD), _contract(DrmSystem.WIDEVINE, scheme=Scheme.CENC))
    contract = source.contract_for(fmt, scheme)
    assert vod_packaging(fmt, scheme) == want == contract.packaging
    assert contract.scheme is scheme
    assert contract.content_id == "c1" and contract.drm == (DrmSystem.WIDEVINE,)


def test_speke_keys_encrypt(keyserver, media, tmp_path: Path) -> None:
    """Positive control: the same source with a real key server makes a package whose tracks
    carry the key server's KIDs."""
    source = SpekeKeys(SpekeClient(keyserver.speke_url),
                       _contract(DrmSystem.WIDEVINE, DrmSystem.CLEARKEY,
                                 version=SpekeVersion.V2_0))
    result = encrypt_vod(VodOptions(input=media("h264-aac-mp4"), output=tmp_path / "out",
                                    scheme=Scheme.CBCS, segment_duration=2, jobs=1), source)
    assert result.manifests and all(t.kid for t in result.tracks)
    assert (tmp_path / "out" / "manifest.mpd").exists()
