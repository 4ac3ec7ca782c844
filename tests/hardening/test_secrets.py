"""Secrets never leak: every CLI command, run with ``--log-level debug --log-file F``, prints no
content key (hex lower/upper, base64, base64url, with or without padding) on stdout, stderr, in
its log file or in the package it writes; keys are never in exception messages or reprs; a
private key file readable by others is warned about.

Controls prove the search works: ``keys --show-keys`` and ``cpix --show-keys`` print the very
keys the other runs must hide.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import pytest
import requests

from speke_packager.constants import DrmSystem, Packaging, Scheme, SpekeVersion
from speke_packager.errors import SpekePackagerError
from speke_packager.keys import EncryptionContract, SpekeClient
from speke_packager.keyserver import KeyServer, derive_key
from speke_packager.model import ContentKey, KeyEntry, KeySet

from .conftest import KEY, KID_HEX, ROOT, cli

pytestmark = pytest.mark.timeout(600)

SEED = "secrets-seed"
RAW_KID = UUID(KID_HEX)


def spellings(key: bytes) -> set[str]:
    """Every usual text form of a 16-byte key."""
    b64 = base64.b64encode(key).decode()
    url = base64.urlsafe_b64encode(key).decode()
    forms = {key.hex(), key.hex().upper(), b64, b64.rstrip("="), url, url.rstrip("="),
             "0x" + key.hex()}
    if len(key) == 16:
        forms.add(str(UUID(bytes=key)))
    return forms


def find_leaks(text: str, keys: set[bytes]) -> list[str]:
    return sorted({s for k in keys for s in spellings(k) if s in text})


@dataclass
class Session:
    tmp: Path
    url: str  # key server base URL
    proc: subprocess.Popen[str]
    log: Path
    texts: dict[str, str] = field(default_factory=dict)  # label -> captured text
    keys: set[bytes] = field(default_factory=set)

    def run(self, label: str, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        logf = self.tmp / f"{label}.log"
        proc = cli("--log-level", "debug", "--log-file", str(logf), *args)
        if expect is not None:
            assert proc.returncode == expect, (label, proc.returncode, proc.stderr[-1500:])
        self.texts[f"{label}:stdout"] = proc.stdout
        self.texts[f"{label}:stderr"] = proc.stderr
        self.texts[f"{label}:log"] = logf.read_text() if logf.exists() else ""
        return proc

    def add_package(self, label: str, folder: Path) -> None:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and p.suffix in (".mpd", ".m3u8", ".json", ".txt", ".xml"):
                self.texts[f"{label}:{p.relative_to(folder)}"] = p.read_text("utf-8", "replace")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    tmp = tmp_path_factory.mktemp("secrets")
    log = tmp / "keyserver.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "speke_packager", "--log-level", "debug", "--log-file", str(log),
         "keyserver", "--allow-fault-header", "--port", "0", "--seed", SEED, "--log-requests"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on "), line
    s = Session(tmp, line.split()[-1].rstrip("/"), proc, log)
    s.keys.add(KEY)
    yield s
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    assert "Traceback" not in err, err[-1500:]
    assert not find_leaks(out + err, s.keys)


def _speke(s: Session, cid: str, drm: str = "widevine,playready,clearkey") -> list[str]:
    return ["--speke-url", f"{s.url}/speke", "--content-id", cid, "--drm", drm]


def _learn_keys(s: Session, cid: str, *extra: str) -> set[bytes]:
    """Control: --show-keys really prints keys, in a form we then search for everywhere."""
    proc = s.run(f"show-{cid}", "keys", *_speke(s, cid), *extra, "--json", "--show-keys")
    found = {bytes.fromhex(m) for m in re.findall(r'"key": "([0-9a-f]{32})"', proc.stdout)}
    assert found, proc.stdout[:500]
    for kid in re.findall(r'"kid": "([0-9a-f-]{36})"', proc.stdout):
        assert derive_key(SEED, cid, UUID(kid)) in found
    s.texts.pop(f"show-{cid}:stdout")  # the control's own stdout legitimately has the keys
    return found


@pytest.fixture(scope="module")
def ran(session: Session, tmp_path_factory: pytest.TempPathFactory) -> Session:
    """Run every command once (module scope: the expensive part is shared by the checks)."""
    from fixtures.media import make_asset
    from tests.conftest import MEDIA_DIR
    s = session
    src = make_asset("h264-aac-mp4", MEDIA_DIR)
    for cid in ("sec-keys", "sec-vod"):
        s.keys |= _learn_keys(s, cid, "--scheme", "cenc")
    s.keys |= _learn_keys(s, "sec-cbcs", "--scheme", "cbcs", "--packaging", "hls-fmp4",
                          "--drm", "fairplay,widevine")

    # keys: table and JSON, several versions
    s.run("keys-table", "keys", *_speke(s, "sec-keys"), "--scheme", "cenc")
    s.run("keys-json", "keys", *_speke(s, "sec-keys"), "--scheme", "cenc", "--json")
    s.run("keys-v1", "keys", *_speke(s, "sec-keys", "widevine"), "--scheme", "cenc",
          "--speke-version", "1.0")
    s.run("keys-hls", "keys", *_speke(s, "sec-cbcs", "fairplay,widevine"), "--scheme", "cbcs",
          "--packaging", "hls-fmp4")

    # cpix: a saved key-server answer, parsed and checked
    client = SpekeClient(f"{s.url}/speke")
    req = client.prepare(EncryptionContract("sec-keys", (DrmSystem.WIDEVINE, DrmSystem.CLEARKEY),
                                            (Packaging.DASH,), Scheme.CENC, SpekeVersion.V2_0))
    answer = requests.post(f"{s.url}/speke", data=req.body, headers=dict(req.headers), timeout=30)
    assert answer.status_code == 200
    doc = s.tmp / "answer.xml"
    doc.write_bytes(answer.content)
    s.run("cpix", "cpix", str(doc))
    s.run("cpix-json", "cpix", str(doc), "--json")
    shown = s.run("cpix-show", "cpix", str(doc), "--show-keys")
    assert find_leaks(shown.stdout, s.keys), "control: cpix --show-keys prints no known key"
    s.texts.pop("cpix-show:stdout")

    # encrypt-vod: SPEKE keys and raw keys; verify both packages
    out1 = s.tmp / "vod-speke"
    s.run("vod-speke", "encrypt-vod", str(src), "-o", str(out1), *_speke(s, "sec-vod"),
          "--scheme", "cenc", "--format", "dash", "--jobs", "1")
    s.add_package("vod-speke", out1)
    out2 = s.tmp / "vod-raw"
    s.run("vod-raw", "encrypt-vod", str(src), "-o", str(out2), "--key", f"{KID_HEX}:{KEY.hex()}",
          "--scheme", "cbcs", "--format", "both", "--jobs", "1",
          "--key-uri", f"{s.url}/keys/{{kid}}",
          "--clearkey-license-url", f"{s.url}/clearkey/license")
    s.add_package("vod-raw", out2)
    s.run("verify-raw", "verify", str(out2), "--reference", str(src),
          "--key", f"{KID_HEX}:{KEY.hex()}")
    s.run("verify-speke", "verify", str(out1), "--reference", str(src), *_speke(s, "sec-vod"),
          "--scheme", "cenc")
    s.run("verify-wrong-key", "verify", str(out2), "--reference", str(src),
          "--key", f"{KID_HEX}:{bytes(16).hex()}", expect=None)

    # encrypt-batch: a SPEKE row, a raw-key row and a bad row; its report and manifests too
    import json

    s.keys |= _learn_keys(s, "sec-batch", "--scheme", "cenc")
    jobs = s.tmp / "batch.jsonl"
    rows = [{"id": "b1", "input": str(src), "output": str(s.tmp / "batch-speke"),
             "content_id": "sec-batch", "drm": "widevine,playready,clearkey", "scheme": "cenc",
             "format": "dash"},
            {"id": "b2", "input": str(src), "output": str(s.tmp / "batch-raw"),
             "key": [f"{KID_HEX}:{KEY.hex()}"], "drm": "clearkey", "scheme": "cbcs",
             "format": "dash"},
            {"id": "b3", "input": str(src), "output": str(s.tmp / "batch-bad"),
             "key": [f"{KID_HEX}:{KEY.hex()[:-1]}"]}]
    jobs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = s.tmp / "batch-report.json"
    s.run("batch", "encrypt-batch", str(jobs), "--workers", "1", "--speke-url",
          f"{s.url}/speke", "--report", str(report), expect=1)
    s.texts["batch:report"] = report.read_text()
    assert '"failed": 1' in s.texts["batch:report"]
    s.add_package("batch-speke", s.tmp / "batch-speke")
    s.add_package("batch-raw", s.tmp / "batch-raw")

    # error paths: a malformed key, an input that does not exist, a key server with bad MACs
    bad = KEY.hex()[:-1]
    s.keys.add(bytes.fromhex(KEY.hex()[:-2] + "00"))  # near-miss spelling of the bad one
    p = s.run("vod-badkey", "encrypt-vod", str(src), "-o", str(s.tmp / "x"), "--key",
              f"{KID_HEX}:{bad}", expect=None)
    assert p.returncode != 0 and bad not in p.stderr and bad not in p.stdout
    s.run("vod-missing", "encrypt-vod", str(s.tmp / "nope.mp4"), "-o", str(s.tmp / "y"),
          "--key", f"{KID_HEX}:{KEY.hex()}", expect=None)
    s.run("keys-down", "keys", "--speke-url", "http://127.0.0.1:9/speke", "--content-id",
          "sec-keys", "--retries", "0", expect=None)

    # serve --check plays the raw-key package in headless Chromium with our licence endpoint
    if Path("/usr/bin/chromium").exists() and (ROOT / "node_modules" / "shaka-player").exists():
        s.run("serve-check", "serve", str(out2), "--check", "--seconds", "2", "--port", "0",
              "--key", f"{KID_HEX}:{KEY.hex()}", expect=None)
    return s


def test_no_key_in_any_output(ran: Session) -> None:
    assert len(ran.texts) > 30
    leaks = {label: find_leaks(text, ran.keys) for label, text in ran.texts.items()}
    assert not {k: v for k, v in leaks.items() if v}


def test_keyserver_logs_hold_no_key(ran: Session) -> None:
    text = ran.log.read_text()
    assert "POST /speke" in text or "/speke" in text, "control: request logging is on"
    assert not find_leaks(text, ran.keys)


def test_debug_logs_were_written(ran: Session) -> None:
    """Control: debug logging really produced output for the commands under test."""
    logs = [t for label, t in ran.texts.items() if label.endswith(":log") and t.strip()]
    assert len(logs) >= 5


def test_serve_check_ran_or_skip(ran: Session) -> None:
    if "serve-check:stdout" not in ran.texts:
        pytest.skip("headless Chromium or node_modules/shaka-player not available")
    assert ran.texts["serve-check:stdout"] or ran.texts["serve-check:stderr"]


def test_demo_runs_end_to_end_and_prints_no_key(tmp_path: Path) -> None:
    """The README's main command as a user runs it: exit 0, an HLS + DASH package, and no
    content key anywhere in what it prints (the keys are derived here from the demo's seed and
    the KIDs it lists); both headless playback checks passed when Chromium is there."""
    from speke_packager.cli.demo_cmd import DEMO_CONTENT_ID, DEMO_SEED

    out = tmp_path / "demo-output"
    proc = subprocess.run([sys.executable, "-m", "speke_packager", "demo", "--output", str(out),
                           "--port", "0"], capture_output=True, text=True, timeout=600,
                          check=False, cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-2000:]
    assert (out / "master.m3u8").is_file() and (out / "manifest.mpd").is_file()
    kids = {UUID(m) for m in re.findall(r"^\s+([0-9a-f-]{36})\s", proc.stdout, re.M)}
    assert len(kids) >= 3, proc.stdout  # SD, HD and audio keys (PRESET-VIDEO-2 + AUDIO-1)
    keys = {derive_key(DEMO_SEED, DEMO_CONTENT_ID, kid) for kid in kids}
    assert find_leaks(text, keys) == []
    if "[6/6] playback check skipped" not in proc.stdout:
        assert proc.stdout.count('"ok": true') == 2, proc.stdout[-3000:]  # Shaka DASH, hls.js HLS


# ---- reprs and exception messages -------------------------------------------------------------
def test_reprs_hide_keys() -> None:
    ck = ContentKey(RAW_KID, KEY, iv=bytes(16))
    entry = KeyEntry(ck)
    ks = KeySet(content_id="c", scheme=Scheme.CENC, entries=(entry,), version=SpekeVersion.V2_0)
    from speke_packager.media.ts import SampleAesEncryptor
    objects: list[object] = [ck, entry, ks, SampleAesEncryptor(KEY, bytes(16))]
    for obj in objects:
        assert not find_leaks(repr(obj) + str(obj), {KEY}), type(obj).__name__
    with KeyServer(allow_fault_header=True, seed=SEED) as server:
        server.register_key(RAW_KID, KEY)
        assert not find_leaks(repr(server), {KEY})


def test_exceptions_hide_keys() -> None:
    """Errors about keys name the KID, never the key bytes."""
    cases = []
    for fn in (lambda: ContentKey(RAW_KID, KEY[:15]),
               lambda: ContentKey(RAW_KID, KEY + b"\x00"),
               lambda: ContentKey(RAW_KID, KEY, iv=KEY[:5])):
        with pytest.raises(SpekePackagerError) as info:
            fn()
        cases.append(info.value)
    for exc in cases:
        assert not find_leaks(f"{exc} {exc!r} {exc.args}", {KEY, KEY[:15], KEY + b"\x00"})


def test_bad_mac_error_hides_keys() -> None:
    """A CPIX integrity failure (corrupted ValueMAC) names the KID, not the key."""
    import tempfile

    from speke_packager.keys import DeliveryKey
    from tests.keyserver.conftest import make_cert
    with tempfile.TemporaryDirectory() as d, KeyServer(allow_fault_header=True, seed=SEED, faults=["bad-mac"]) as server:
        pair = make_cert(Path(d), "delivery")
        dk = DeliveryKey.load(pair.cert_pem, pair.key_pem)
        contract = EncryptionContract("mac-1", (DrmSystem.WIDEVINE,), (Packaging.DASH,),
                                      Scheme.CENC, SpekeVersion.V2_0)
        with pytest.raises(SpekePackagerError) as info:
            SpekeClient(server.speke_url, delivery_key=dk, retries=0).fetch(contract)
        keys = {server.key_for("mac-1", k) for k in _kids(contract)}
        assert not find_leaks(f"{info.value} {info.value!r}", keys)


def _kids(contract: EncryptionContract) -> list[UUID]:
    return list(SpekeClient("http://127.0.0.1:9/").prepare(contract).kids)


# ---- private key permissions ------------------------------------------------------------------
def _tls_pair(tmp: Path, mode: int) -> tuple[Path, Path]:
    from tests.keyserver.conftest import make_cert
    pair = make_cert(tmp, "tls", server=True)
    pair.key_pem.chmod(mode)
    return pair.cert_pem, pair.key_pem


@pytest.mark.parametrize("mode,warns", [(0o644, True), (0o640, True), (0o600, False)])
def test_keyserver_warns_about_exposed_tls_key(tmp_path: Path, mode: int, warns: bool) -> None:
    cert, key = _tls_pair(tmp_path, mode)
    proc = subprocess.Popen(
        [sys.executable, "-m", "speke_packager", "keyserver", "--allow-fault-header", "--port", "0", "--tls-cert",
         str(cert), "--tls-key", str(key)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("listening on https://")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    assert ("accessible by other users" in err) is warns, err
    assert not find_leaks(err, set())


def _delivery_files(tmp: Path, mode: int) -> tuple[Path, Path]:
    from tests.keyserver.conftest import make_cert
    pair = make_cert(tmp, "delivery")
    pair.key_pem.chmod(mode)
    return pair.cert_pem, pair.key_pem


@pytest.mark.parametrize("option", ["--delivery-key", "--client-key"])
def test_keys_warns_about_exposed_private_key(session: Session, tmp_path: Path, option: str
                                              ) -> None:
    cert, key = _delivery_files(tmp_path, 0o644)
    if option == "--delivery-key":
        args = ["--delivery-cert", str(cert), "--delivery-key", str(key)]
    else:
        args = ["--auth", "mtls", "--client-cert", str(cert), "--client-key", str(key)]
    proc = cli("keys", *_speke(session, "sec-perm", "widevine"), "--scheme", "cenc", *args)
    assert "accessible by other users" in proc.stderr or "readable by" in proc.stderr, \
        proc.stderr[-800:]
