"""The ``keys`` and ``cpix`` sub-commands, in-process, against the real local key server;
plus the no-secrets-in-output rule."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from uuid import UUID

import pytest
import requests

from speke_packager.cli import main
from speke_packager.constants import DrmSystem, Packaging
from speke_packager.errors import CpixIntegrityError, KeyServerHTTPError
from speke_packager.keys import DeliveryKey, EncryptionContract, HeaderAuth, SpekeClient
from speke_packager.keys.request import build_request
from speke_packager.keyserver import KeyServer
from tests.keys.conftest import Pki

V = "cpix-test-vectors__"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _base(ks: KeyServer) -> list[str]:
    return ["keys", "--speke-url", ks.speke_url, "--content-id", "chan-7"]


def test_keys_table(ks: KeyServer, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(capsys, *_base(ks), "--drm", "widevine,playready,fairplay",
                        "--packaging", "dash,hls-fmp4", "--video-preset", "PRESET-VIDEO-2")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["KID", "TRACK", "TYPE", "PERIOD", "DRM", "SYSTEMS"]
    assert len(lines) == 4
    types = [ln.split()[1] for ln in lines[1:]]
    assert types == ["SD", "HD", "AUDIO"]
    assert all(ln.split()[3] == "widevine,playready,fairplay" for ln in lines[1:])
    for ln in lines[1:]:
        key = ks.key_for("chan-7", UUID(ln.split()[0]))
        assert key.hex() not in out and base64.b64encode(key).decode() not in out


def test_keys_json_shape_and_show_keys(ks: KeyServer, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    rc, out, _ = _run(capsys, *_base(ks), "--drm", "widevine,playready", "--json",
                      "--key-periods", "5:2", "--speke-version", "2.1")
    assert rc == 0
    doc = json.loads(out)
    assert set(doc) == {"content_id", "speke_version", "scheme", "keys"}
    assert (doc["content_id"], doc["speke_version"], doc["scheme"]) == ("chan-7", "2.1", "cbcs")
    assert [(k["track_type"], k["period"]) for k in doc["keys"]] == [
        ("VIDEO", 5), ("AUDIO", 5), ("VIDEO", 6), ("AUDIO", 6)]
    for k in doc["keys"]:
        assert "key" not in k
        assert set(k["drm"]) == {"edef8ba9-79d6-4ace-a3c8-27dcd51d21ed",
                                 "9a04f079-9840-4286-ab92-e65be0885f95"}
        wv = k["drm"]["edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"]
        assert set(wv) == {"name", "pssh", "content_protection_data", "hls_media",
                           "hls_master", "playready_object"}
        assert base64.b64decode(wv["pssh"])[4:8] == b"pssh"
    rc, out, _ = _run(capsys, *_base(ks), "--json", "--show-keys")
    for k in json.loads(out)["keys"]:
        assert bytes.fromhex(k["key"]) == ks.key_for("chan-7", UUID(k["kid"]))


def test_keys_encrypted_via_cli(ks: KeyServer, pki: Pki, capsys: pytest.CaptureFixture[str]
                                ) -> None:
    rc, out, err = _run(capsys, *_base(ks), "--delivery-cert", str(pki.delivery.cert),
                        "--delivery-key", str(pki.delivery.key), "--delivery-key-password",
                        "s3cret", "--json", "--show-keys")
    assert rc == 0, err
    for k in json.loads(out)["keys"]:
        assert bytes.fromhex(k["key"]) == ks.key_for("chan-7", UUID(k["kid"]))
    rc, out, err = _run(capsys, *_base(ks), "--delivery-key", str(pki.delivery.pfx),
                        "--delivery-key-password", "s3cret", "--json")
    assert rc == 0, err


@pytest.mark.parametrize(("extra", "code", "needle"), [
    (["--header", "x-fault: status=403"], 3, "HTTP 403"),
    (["--header", "x-fault: version=1.0"], 3, "version-echo"),
    (["--drm", "nosuchdrm"], 2, "unknown DRM"),
    (["--video-preset", "PRESET-VIDEO-12"], 2, "unknown video preset"),
    (["--key-periods", "x:2"], 2, "FIRST:COUNT"),
    (["--auth", "mtls"], 2, "--client-cert"),
    (["--timeout", "0"], 2, "--timeout"),
    (["--header", "broken"], 2, "Name: value"),
    (["--delivery-cert", "/nonexistent.pem"], 2, "--delivery-key"),
])
def test_keys_errors_are_one_line(ks: KeyServer, capsys: pytest.CaptureFixture[str],
                                  extra: list[str], code: int, needle: str) -> None:
    rc, out, err = _run(capsys, *_base(ks), "--retries", "0", *extra)
    assert rc == code
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("speke-packager: error: ")
    assert needle in err and "Traceback" not in err


def test_keys_missing_url(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(capsys, "keys", "--content-id", "c")
    assert rc == 2 and "--speke-url" in err


def test_insecure_warns(ks: KeyServer, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(capsys, *_base(ks), "--insecure")
    assert rc == 0 and "TLS verification" in err and "disabled" in err


# ---- cpix ----------------------------------------------------------------------------------

def test_cpix_decrypts_vector(cpix_samples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = str(cpix_samples / f"{V}EncryptedContentKeys.xml")
    pfx = str(cpix_samples / f"{V}Cert1.pfx")
    rc, out, _ = _run(capsys, "cpix", f, "--delivery-key", pfx, "--password", "Cert1", "--json",
                      "--show-keys")
    assert rc == 0
    doc = json.loads(out)
    got = {k["kid"][:8]: base64.b64encode(bytes.fromhex(k["key"])).decode()
           for k in doc["keys"]}
    assert got["bd5adf51"] == "3rWoHYasQubO6HbJGrGtLw=="
    assert {k["value"] for k in doc["keys"]} == {"decrypted"}
    rc, out, _ = _run(capsys, "cpix", f, "--delivery-key", pfx, "--password", "Cert1")
    assert rc == 0 and "decrypted" in out and "deb5a81d" not in out  # no keys without the flag
    rc, out, _ = _run(capsys, "cpix", f)
    assert rc == 0 and "encrypted" in out and "--delivery-key" in out


@pytest.mark.parametrize(("name", "needle"), [
    ("Invalid_WrongMac.xml", "MAC does not match"),
    ("KeyRotationMultiKeySinglePeriod.xml", "explicitIV"),
])
def test_cpix_invalid_vectors(cpix_samples: Path, capsys: pytest.CaptureFixture[str],
                              tmp_path: Path, name: str, needle: str) -> None:
    pfx = tmp_path / "Cert1.pfx"  # a private copy (0600): the shared one is world-readable
    pfx.write_bytes((cpix_samples / f"{V}Cert1.pfx").read_bytes())
    pfx.chmod(0o600)
    rc, _, err = _run(capsys, "cpix", str(cpix_samples / f"{V}{name}"), "--delivery-key",
                        str(pfx), "--password", "Cert1")
    assert rc != 0 and needle in err and err.count("\n") == 1


def test_cpix_request_and_refusals(cpix_samples: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    req = cpix_samples / ("speke-reference-server__spekev2_verification_testsuite__"
                          "spekev2_requests__general__4_spekev2_negative_preset_shared_video.xml")
    rc, _, err = _run(capsys, "cpix", str(req))
    assert rc != 0 and "undeclared period" in err
    ok = cpix_samples / "speke-reference-server__tests__server_api_body_spekev2.xml"
    rc, out, _ = _run(capsys, "cpix", str(ok), "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["kind"] == "request" and doc["speke_version"] == "2.0"
    assert doc["schema_valid"] is True
    bomb = tmp_path / "bomb.xml"
    bomb.write_bytes(b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa">]><x>&a;</x>')
    rc, _, err = _run(capsys, "cpix", str(bomb))
    assert rc != 0 and "DTD" in err
    rc, _, err = _run(capsys, "cpix", str(tmp_path / "missing.xml"))
    assert rc == 2 and "cannot read" in err


def test_cpix_on_key_server_answer(ks: KeyServer, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    r = build_request(EncryptionContract("chan-7", (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY,
                                                    DrmSystem.FAIRPLAY),
                                         (Packaging.DASH, Packaging.HLS_FMP4)))
    ans = requests.post(ks.speke_url, data=r.body, headers=dict(r.headers), timeout=10)
    f = tmp_path / "answer.xml"
    f.write_bytes(ans.content)
    rc, out, err = _run(capsys, "cpix", str(f), "--json", "--strict-schema")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "response" and len(doc["keys"]) == 2
    assert all(len(k["drm"]) == 3 for k in doc["keys"])
    bad = tmp_path / "bad.xml"
    bad.write_bytes(ans.content.replace(b"<cpix:PSSH>", b"<cpix:PSSH>AAAA", 1))
    rc, _, err = _run(capsys, "cpix", str(bad))
    assert rc != 0 and "[pssh]" in err


# ---- secrets -----------------------------------------------------------------------------

def test_no_key_in_logs_output_or_errors(ks: KeyServer, pki: Pki,
                                         capsys: pytest.CaptureFixture[str],
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rc, out, err = _run(capsys, "--log-level", "debug", *_base(ks), "--drm",
                        "widevine,playready,fairplay", "--packaging", "dash,hls-fmp4", "--json",
                        "--delivery-cert", str(pki.delivery.cert), "--delivery-key",
                        str(pki.delivery.key), "--delivery-key-password", "s3cret",
                        "--header", "x-api-key: topsecret-token")
    assert rc == 0
    kids = [UUID(k["kid"]) for k in json.loads(out)["keys"]]
    dk = DeliveryKey.load(pki.delivery.cert, pki.delivery.key, "s3cret")
    client = SpekeClient(ks.speke_url, delivery_key=dk, retries=0)
    keyset = client.fetch(EncryptionContract("chan-7", (DrmSystem.WIDEVINE,)))
    texts = [out, err, caplog.text, repr(keyset), str(keyset), repr(list(keyset)),
             repr(keyset.entries[0].key), repr(client), repr(dk)]
    # errors raised with keys around: MAC failure and HTTP errors
    for fault, exc in (("bad-mac", CpixIntegrityError), ("status=500", KeyServerHTTPError)):
        c = SpekeClient(ks.speke_url, delivery_key=dk, retries=0,
                        auth=HeaderAuth({"x-fault": fault, "Connection": "close"}))
        with pytest.raises(exc) as ei:
            c.fetch(EncryptionContract("chan-7", (DrmSystem.WIDEVINE,)))
        texts += [str(ei.value), repr(ei.value)]
    blob = "\n".join(texts)
    assert "topsecret-token" not in blob
    for kid in [*kids, *(e.kid for e in keyset)]:
        key = ks.key_for("chan-7", kid)
        for form in (key.hex(), key.hex().upper(), base64.b64encode(key).decode(),
                     base64.urlsafe_b64encode(key).decode().rstrip("=")):
            assert form not in blob


def test_keys_digest_auth_needs_password_env(ks: KeyServer, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPEKE_PASSWORD", raising=False)
    rc, _, err = _run(capsys, *_base(ks), "--auth", "digest", "--user", "u")
    assert rc == 2 and "SPEKE_PASSWORD" in err
    monkeypatch.setenv("SPEKE_PASSWORD", "pw")
    rc, _, err = _run(capsys, *_base(ks), "--auth", "basic", "--user", "u")
    assert rc == 0, err  # the local key server ignores HTTP auth
