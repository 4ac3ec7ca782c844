"""`conformance` against the local key server: everything passes in every version, each fault
switch fails exactly the checks that name it, "not supported" versions are reported as such, the
JUnit XML is well-formed and counts right, the registry can be extended, and --trace keeps no
key."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from lxml import etree

from speke_packager.conformance import (
    REGISTRY,
    CheckFailed,
    ConformanceOptions,
    ConformanceReport,
    Outcome,
    RunContext,
    junit_xml,
    register_check,
    render_table,
    run_conformance,
)
from speke_packager.constants import NS_CPIX, DrmSystem, Packaging, SpekeVersion
from speke_packager.keys import SpekeClient
from speke_packager.keyserver import KeyServer

SEED = "conformance-tests"
V1, V20, V21 = SpekeVersion.V1_0, SpekeVersion.V2_0, SpekeVersion.V2_1
REQUEST_CHECKS = {c.name for c in REGISTRY.values() if c.kind == "request"}
REFUSALS = {n for n in REQUEST_CHECKS if n.startswith("refuse-")}
POSITIVE = REQUEST_CHECKS - REFUSALS


def keyserver_with_fault(fault: str | None) -> KeyServer:
    """The one place a faulty key server is made (server-wide switch, every request)."""
    return KeyServer(seed=SEED, faults=[fault] if fault else [])


def run(url: str, *versions: SpekeVersion, **kw: object) -> ConformanceReport:
    opts = ConformanceOptions(versions=versions or tuple(SpekeVersion), **kw)  # type: ignore
    return run_conformance(SpekeClient(url, retries=0, timeout=(2.0, 3.0)), opts)


def failed(report: ConformanceReport) -> dict[str, str]:
    return {r.check: r.reason for r in report.results if r.outcome is Outcome.FAIL}


def test_passes_against_our_key_server_in_every_version() -> None:
    with keyserver_with_fault(None) as ks:
        report = run(ks.speke_url)
    assert report.passed, failed(report)
    assert {r.outcome for r in report.results} == {Outcome.PASS}
    for v in SpekeVersion:
        ran = {r.check for r in report.results if r.version == v.value}
        assert ran == {c.name for c in REGISTRY.values() if v in c.versions}
    assert len(report.results) > 70


# fault -> (versions, {check that must fail: text its reason must hold}); every other check
# must pass or be skipped. The first rows target one rule each; the last ones break transport.
FAULTS: list[tuple[str, tuple[SpekeVersion, ...], dict[str, str]]] = [
    ("layout=A", (V1, V20), {}),  # not a fault: the control
    ("no-user-agent", (V20,), {"user-agent": "no X-Speke-User-Agent"}),
    ("version=9.9", (V20,), {"version-echo": "'9.9' answered to '2.0'",
                             "strict-validation": "[version-echo]",
                             "header-case": "'9.9'"}),
    ("version=none", (V21,), {"version-echo": "no X-Speke-Version",
                              "strict-validation": "[version-echo]",
                              "header-case": "None"}),
    ("drop=PSSH", (V20,), {"strict-validation": "PSSH", "widevine-pssh": "PSSH missing",
                           "clearkey-pssh": "PSSH missing",
                           "cpd-equals-pssh": "no PSSH"}),
    ("drop=ContentProtectionData", (V20,), {"strict-validation": "ContentProtectionData",
                                            "cpd-equals-pssh": "ContentProtectionData missing"}),
    ("empty=HLSSignalingData", (V21,), {"strict-validation": "HLSSignalingData",
                                        "fairplay-uri": "HLSSignalingData missing",
                                        "hls-signaling": "HLSSignalingData media missing"}),
    ("empty=URIExtXKey", (V1,), {"strict-validation": "URIExtXKey is empty",
                                 "fairplay-uri": "URIExtXKey missing",
                                 "hls-signaling": "URIExtXKey missing"}),
    ("pssh-mismatch", (V20,), {"strict-validation": "differs from PSSH",
                               "cpd-equals-pssh": "cenc:pssh differs from PSSH"}),
    ("bad-mac", (V1, V20), {"strict-validation": "MAC does not match",
                            "encrypted-keys": "MAC does not match"}),
    ("plain-key", (V20,), {"strict-validation": "[encryption]",
                           "encrypted-keys": "PlainValue"}),
    ("wrong-kid", (V20,), {"strict-validation": "[kid]"}),
    ("change-scheme", (V20,), {"strict-validation": "[scheme]"}),
    ("change-rules", (V21,), {"strict-validation": "[usage-rules]"}),
    ("change-content-id", (V1, V20), {"strict-validation": "[content-id]",
                                      "content-id-echo": "-changed"}),
    ("duplicate-kid", (V20,), {"strict-validation": "[duplicate-kid]",
                               "presets": "distinct KIDs"}),
    ("delay=0.35", (V1,), {"time-budget": "over the 0.3 s budget"}),
    ("status=500", (V20,), {**{c: "HTTP 500" for c in POSITIVE - {"refuse-x"}},
                            **{c: "not a 4xx" for c in REFUSALS}}),
    ("truncate", (V20,), {c: "not a CPIX document" for c in POSITIVE}),
    ("reset", (V1,), {c: "no answer" for c in POSITIVE if c not in ("presets", "header-case")}),
]


@pytest.mark.parametrize("fault, versions, expected", FAULTS, ids=[f[0] for f in FAULTS])
def test_each_fault_fails_exactly_its_checks(fault: str, versions: tuple[SpekeVersion, ...],
                                             expected: dict[str, str]) -> None:
    budget = 0.3 if fault.startswith("delay") else 5.0
    with keyserver_with_fault(fault) as ks:
        report = run(ks.speke_url, *versions, budget=budget)
    assert not any("crashed" in r.reason for r in report.results)
    for v in versions:
        got = {r.check: r.reason for r in report.results
               if r.version == v.value and r.outcome is Outcome.FAIL}
        want = {c: t for c, t in expected.items() if v in REGISTRY[c].versions}
        assert set(got) == set(want), (v, got)
        for check, text in want.items():
            assert text in got[check], (check, got[check])
        assert not any(r.outcome is Outcome.NOT_SUPPORTED for r in report.results)
    assert report.passed is (not expected)


class _Proxy(BaseHTTPRequestHandler):
    """In front of our key server: ``v1only`` ignores X-Speke-Version (answers v1 like a
    v1-only server); ``no21`` refuses 2.1 with 422 'Unsupported SPEKE version'."""

    target = ""
    mode = ""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        version = self.headers.get("x-speke-version")
        if self.mode == "noclearkey" and b"1077efec-c0b2-4d02-ace3-3c1e52e2fb4b" in body:
            self._send(422, {"Content-Type": "text/plain"}, b"Unsupported DRM system ClearKey")
            return
        if self.mode == "no21" and version == "2.1":
            self._send(422, {"Content-Type": "text/plain"}, b"Unsupported SPEKE version")
            return
        headers = {"content-type": "application/xml"}
        if version and self.mode != "v1only":
            headers["x-speke-version"] = version
        r = requests.post(self.target, data=body, headers=headers, timeout=10)
        self._send(r.status_code, {k: v for k, v in r.headers.items()
                                   if k.lower() in ("content-type", "x-speke-version",
                                                    "x-speke-user-agent", "speke-user-agent")},
                   r.content)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def proxy() -> Iterator[tuple[KeyServer, type[_Proxy], str]]:
    with keyserver_with_fault(None) as ks:
        handler = type("P", (_Proxy,), {"target": ks.speke_url})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        t = threading.Thread(target=httpd.serve_forever, daemon=True)
        t.start()
        yield ks, handler, f"http://127.0.0.1:{httpd.server_address[1]}/speke"
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("mode, unsupported", [("v1only", {"2.0", "2.1"}), ("no21", {"2.1"})])
def test_unsupported_versions_are_reported_as_such(proxy, mode: str,  # type: ignore[no-untyped-def]
                                                   unsupported: set[str]) -> None:
    _, handler, url = proxy
    handler.mode = mode
    report = run(url)
    for r in report.results:
        if r.version in unsupported:
            assert r.outcome is Outcome.NOT_SUPPORTED, r
            assert "not supported" in r.reason
        else:
            assert r.outcome is Outcome.PASS, r
    assert report.passed  # "not supported" is not a failure


def test_junit_xml_structure() -> None:
    with keyserver_with_fault("bad-mac") as ks:
        report = run(ks.speke_url, V1, V20, packaging=(Packaging.DASH,))  # HLS: skipped
    root = etree.fromstring(junit_xml(report))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["SPEKE 1.0", "SPEKE 2.0"]
    total = fails = skips = 0
    for s in suites:
        cases = s.findall("testcase")
        names = [c.get("name") for c in cases]
        assert len(names) == len(set(names)) == int(s.get("tests", "-1"))
        n_fail = sum(1 for c in cases if c.find("failure") is not None)
        n_skip = sum(1 for c in cases if c.find("skipped") is not None)
        assert int(s.get("failures", "-1")) == n_fail and int(s.get("skipped", "-1")) == n_skip
        assert s.get("errors") == "0" and float(s.get("time", "x")) >= 0
        for c in cases:
            assert c.get("classname") == f"speke.v{s.get('name', '').split()[1]}"
            f = c.find("failure")
            if f is not None:
                assert f.get("message") and f.text and f.get("type") == "conformance"
        total, fails, skips = total + len(cases), fails + n_fail, skips + n_skip
    assert int(root.get("tests", "-1")) == total and int(root.get("failures", "-1")) == fails
    assert int(root.get("skipped", "-1")) == skips and skips > 0 and fails > 0
    fails_expected = {(r.check, r.version) for r in report.failures()}
    got = {(c.get("name"), s.get("name", "").split()[1]) for s in suites
           for c in s.findall("testcase") if c.find("failure") is not None}
    assert got == fails_expected and ("encrypted-keys", "2.0") in got


def test_registry_is_extensible() -> None:
    @register_check("test-vendor-header", hint="send X-Test-Vendor")
    def vendor_header(ctx: RunContext, v: SpekeVersion) -> str | None:
        for ex in ctx.answers(v):
            if ex.header("x-test-vendor") is None:
                raise CheckFailed(f"{ex.check}: no X-Test-Vendor header")
        return None

    try:
        with keyserver_with_fault(None) as ks:
            report = run(ks.speke_url, V20, checks=("dash", "test-vendor-header"))
        r = report.result("test-vendor-header", "2.0")
        assert r is not None and r.outcome is Outcome.FAIL and r.hint == "send X-Test-Vendor"
        assert [x.check for x in report.results] == ["dash", "test-vendor-header"]
    finally:
        del REGISTRY["test-vendor-header"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "speke_packager", "conformance", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def test_cli_exit_codes_json_junit_and_table(tmp_path: Path) -> None:
    with keyserver_with_fault(None) as ks:
        ok = _cli("--speke-url", ks.speke_url, "--json", "--junit", str(tmp_path / "ok.xml"))
        table = _cli("--speke-url", ks.speke_url, "--versions", "2.0", "--drm", "widevine")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["passed"] is True and data["counts"]["fail"] == 0 and data["versions"] == [
        "1.0", "2.0", "2.1"]
    assert etree.parse(str(tmp_path / "ok.xml")).getroot().get("failures") == "0"
    assert table.returncode == 0 and "PASSED" in table.stdout and "refuse-fairplay-cenc" in \
        table.stdout
    with keyserver_with_fault("pssh-mismatch") as ks:
        bad = _cli("--speke-url", ks.speke_url, "--versions", "2.0")
    assert bad.returncode == 8
    assert bad.stderr.strip().splitlines()[-1].startswith(
        "speke-packager: error: 2 required conformance check(s) failed:")
    assert "cpd-equals-pssh@2.0" in bad.stderr and "FAILED" in bad.stdout
    usage = _cli("--speke-url", "http://127.0.0.1:9/x", "--versions", "3.0")
    assert usage.returncode == 2 and "--versions" in usage.stderr
    listed = _cli("--list-checks")
    assert listed.returncode == 0 and "playready-object" in listed.stdout


def _forms(key: bytes) -> set[str]:
    b64 = base64.b64encode(key).decode()
    url = base64.urlsafe_b64encode(key).decode()
    return {key.hex(), key.hex().upper(), b64, b64.rstrip("="), url, url.rstrip("="),
            str(uuid.UUID(bytes=key)), str(uuid.UUID(bytes_le=key))}


def test_cli_trace_bundle_holds_no_key(tmp_path: Path) -> None:
    trace = tmp_path / "bundle"
    with keyserver_with_fault(None) as ks:
        res = _cli("--speke-url", ks.speke_url, "--trace", str(trace))
        assert res.returncode == 0, res.stderr
        keys: dict[str, bytes] = {}
        for req in trace.glob("*-request.xml"):
            root = etree.parse(str(req)).getroot()
            cid = root.get("contentId") or root.get("id")
            for ck in root.iter(f"{{{NS_CPIX}}}ContentKey"):
                if cid and ck.get("kid"):
                    keys[ck.get("kid", "")] = ks.key_for(cid, uuid.UUID(ck.get("kid")))
    text = "\n".join(p.read_text() for p in trace.iterdir())
    assert len(keys) > 30
    assert all(kid in text for kid in keys)  # positive control: the KIDs are there
    leaked = [f for k in keys.values() for f in _forms(k) if f in text]
    assert not leaked
    summary = json.loads((trace / "summary.json").read_text())
    assert summary["exchanges"] > 40 and "invalid" not in summary["results"]


def test_render_table_names_reason_and_hint(tmp_path: Path) -> None:
    with keyserver_with_fault("no-user-agent") as ks:
        report = run(ks.speke_url, V20)
    out = tmp_path / "t.txt"
    with out.open("w") as f:
        render_table(report, f, width=250)
    line = next(ln for ln in out.read_text().splitlines() if "user-agent" in ln)
    assert "fail" in line and "no X-Speke-User-Agent" in line and "send X-Speke-User-Agent" in line


def test_one_request_per_drm_names_the_missing_one(proxy) -> None:  # type: ignore[no-untyped-def]
    _, handler, url = proxy
    handler.mode = "noclearkey"
    report = run(url, V20)
    got = failed(report)
    assert set(got) == {"dash", "hls-fmp4"}, got
    for check in ("dash", "hls-fmp4"):
        assert got[check] == "clearkey: HTTP 422: Unsupported DRM system ClearKey"
    # --drm without clearkey: everything passes (the control)
    assert run(url, V20, drm=(DrmSystem.WIDEVINE, DrmSystem.PLAYREADY)).passed


def test_cli_uses_the_given_delivery_certificate(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from speke_packager.conformance import ephemeral_delivery_key

    dk = ephemeral_delivery_key()
    cert, key = tmp_path / "cert.der", tmp_path / "key.pem"
    cert.write_bytes(dk.certificate_der)
    key.write_bytes(dk.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key.chmod(0o600)
    trace = tmp_path / "trace"
    with keyserver_with_fault(None) as ks:
        res = _cli("--speke-url", ks.speke_url, "--checks", "encrypted-keys", "--versions",
                   "2.0", "--delivery-cert", str(cert), "--delivery-key", str(key), "--json",
                   "--trace", str(trace))
    assert res.returncode == 0, res.stderr
    (r,) = json.loads(res.stdout)["results"]
    assert r["check"] == "encrypted-keys" and r["result"] == "pass"
    (req,) = trace.glob("*-request.xml")
    assert base64.b64encode(dk.certificate_der).decode() in req.read_text()
