"""``speke-packager keyserver`` as a user runs it: one ready line, SIGINT/SIGTERM exit 0."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import uuid

import pytest
import requests

from . import _req
from ._check import check_answer, expected_key


def start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "speke_packager", "keyserver", "--allow-fault-header", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on "), (line, proc.stderr.read() if proc.stderr else "")
    return proc, line.strip()[len("listening on "):]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_and_stops_cleanly(sig: signal.Signals) -> None:
    proc, url = start("--seed", "cli-seed", "--log-requests")
    try:
        assert url.startswith("http://127.0.0.1:")
        body = _req.v2_request()
        r = requests.post(url + "/speke", data=body, headers={"x-speke-version": "2.0"},
                          timeout=10)
        keys = check_answer(body, r.content).keys
        assert keys[_req.KID_V] == expected_key("cli-seed", "chan-7", _req.KID_V)
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out == ""  # exactly one line on stdout, already read
    assert "POST /speke" in err  # --log-requests
    for key in keys.values():  # keys never logged
        assert key.hex() not in err and key.hex().upper() not in err


def test_cli_faults_and_content_id() -> None:
    proc, url = start("--fault", "status=503", "--fault", "no-user-agent", "--content-id", "c9")
    try:
        r = requests.post(url + "/speke", data=_req.v2_request(),
                          headers={"x-speke-version": "2.0"}, timeout=10)
        assert r.status_code == 503
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert proc.returncode == 0
    proc, url = start("--content-id", "c9", "--seed", "s")
    try:
        kid = uuid.uuid4()
        assert requests.get(f"{url}/keys/{kid.hex}", timeout=10).content == \
            expected_key("s", "c9", kid)
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_cli_bad_options_exit_nonzero() -> None:
    r = subprocess.run([sys.executable, "-m", "speke_packager", "keyserver", "--allow-fault-header", "--port", "0",
                        "--fault", "bogus"], check=False, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "bogus" in r.stderr and "Traceback" not in r.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    r = subprocess.run([sys.executable, "-m", "speke_packager", "keyserver", "--allow-fault-header", "--port", "0",
                        "--require-sigv4"], check=False, capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 2 and "AWS_ACCESS_KEY_ID" in r.stderr


def test_cli_port_in_use() -> None:
    proc, url = start()
    try:
        port = url.rsplit(":", 1)[1]
        r = subprocess.run([sys.executable, "-m", "speke_packager", "keyserver", "--allow-fault-header", "--port", port],
                           check=False, capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "cannot listen" in r.stderr
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_cli_serves_registered_raw_keys() -> None:
    kid = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
    key = bytes.fromhex("0123456789abcdef0123456789abcdef")
    proc, url = start("--key", f"{kid.hex}:{key.hex()}")
    try:
        r = requests.get(f"{url}/keys/{kid.hex}", timeout=10)
        assert r.status_code == 200 and r.content == key
        kid_b64 = base64.urlsafe_b64encode(kid.bytes).rstrip(b"=").decode()
        lic = requests.post(f"{url}/clearkey/license", json={"kids": [kid_b64]}, timeout=10)
        assert lic.status_code == 200
        k = lic.json()["keys"][0]
        assert k["kid"] == kid_b64 and k["kty"] == "oct"
        assert base64.urlsafe_b64decode(k["k"] + "==") == key
        other = requests.get(f"{url}/keys/{uuid.uuid4().hex}", timeout=10)
        assert other.status_code == 404  # negative control: only registered/issued keys
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert key.hex() not in err and key.hex() not in out


def test_cli_refuses_a_malformed_raw_key() -> None:
    proc = subprocess.run([sys.executable, "-m", "speke_packager", "keyserver", "--allow-fault-header", "--port", "0",
                           "--key", "00112233445566778899aabbccddeeff:abcd"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "32 hex digits" in proc.stderr
