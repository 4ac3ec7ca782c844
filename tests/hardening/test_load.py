"""The local key server under load: 200 concurrent SPEKE requests, then a 60-second loopback
soak with no error and no memory growth (RSS of a subprocess-run server via /proc)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
import requests

from speke_packager.constants import DrmSystem, Packaging, Scheme, SpekeVersion
from speke_packager.keys import EncryptionContract, SpekeClient
from speke_packager.keyserver import KeyServer, derive_key

from .conftest import ROOT

SEED = "soak-seed"


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def threads(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        raise AssertionError("no Threads")


@pytest.fixture()
def server() -> Iterator[Server]:
    """``speke-packager keyserver`` in its own process on an ephemeral loopback port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "speke_packager", "keyserver", "--allow-fault-header", "--port", "0", "--seed", SEED],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on "), (line, proc.stderr.read() if proc.stderr else "")
    srv = Server(proc, line.split()[-1].rstrip("/"))
    yield srv
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "Traceback" not in err, err[-2000:]


def _contract(i: int) -> EncryptionContract:
    drm = ((DrmSystem.WIDEVINE, DrmSystem.PLAYREADY), (DrmSystem.CLEARKEY,),
           (DrmSystem.FAIRPLAY,))[i % 3]
    pkg = (Packaging.HLS_FMP4,) if drm == (DrmSystem.FAIRPLAY,) else (Packaging.DASH,)
    scheme = Scheme.CBCS if i % 2 or drm == (DrmSystem.FAIRPLAY,) else Scheme.CENC
    version = (SpekeVersion.V2_0, SpekeVersion.V2_1, SpekeVersion.V1_0)[i % 3] \
        if drm != (DrmSystem.FAIRPLAY,) else SpekeVersion.V2_0
    return EncryptionContract(f"load-{i % 20}", drm, pkg, scheme, version)


def _fetch_and_check(url: str, i: int) -> None:
    contract = _contract(i)
    client = SpekeClient(f"{url}/speke", retries=0, timeout=(30.0, 60.0))
    keys = client.fetch(contract)
    assert keys.entries
    for e in keys.entries:  # an independent check of every key: the server's derivation rule
        assert e.key.key == derive_key(SEED, contract.content_id, e.key.kid)


@pytest.mark.timeout(300)
def test_200_concurrent_requests(server: Server) -> None:
    n = 200
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            barrier.wait(60)
            _fetch_and_check(server.url, i)
        except BaseException as exc:
            errors.append(exc)

    with ThreadPoolExecutor(n) as pool:
        list(pool.map(one, range(n)))
    assert not errors, [repr(e) for e in errors[:5]]
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200


@pytest.mark.timeout(120)
def test_200_concurrent_counted_in_process() -> None:
    """The same burst against an in-process server: every request arrives and is counted."""
    with KeyServer(allow_fault_header=True, host="127.0.0.1", port=0, seed=SEED, default_content_id="load-0") as ks:
        barrier = threading.Barrier(200)

        def one(i: int) -> bool:
            kid = UUID(int=i + 1)
            b64 = base64.urlsafe_b64encode(kid.bytes).rstrip(b"=").decode()
            barrier.wait(60)
            r = requests.post(ks.clearkey_license_url, json={"kids": [b64]}, timeout=60)
            assert r.status_code == 200, r.text
            k = r.json()["keys"][0]["k"]
            return base64.urlsafe_b64decode(k + "=" * (-len(k) % 4)) == \
                derive_key(SEED, "load-0", kid)

        with ThreadPoolExecutor(200) as pool:
            ok = list(pool.map(one, range(200)))
        assert all(ok)
        assert ks.request_count("/clearkey/license") == 200


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_soak_60s_no_error_no_memory_growth(server: Server) -> None:
    stop = time.monotonic() + 60
    errors: list[BaseException] = []
    done = [0]
    lock = threading.Lock()

    def worker(w: int) -> None:
        session = requests.Session()
        i = w
        while time.monotonic() < stop and not errors:
            try:
                _fetch_and_check(server.url, i)
                r = session.get(f"{server.url}/healthz", timeout=30)
                assert r.status_code == 200
            except BaseException as exc:
                errors.append(exc)
                return
            i += 8
            with lock:
                done[0] += 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    time.sleep(10)  # warm-up: caches, thread stacks, allocator arenas
    baseline = server.rss_kib()
    samples = []
    while any(t.is_alive() for t in threads):
        time.sleep(5)
        samples.append(server.rss_kib())
    for t in threads:
        t.join()
    assert not errors, [repr(e) for e in errors[:3]]
    assert done[0] > 100, f"only {done[0]} requests in 60 s"
    final = server.rss_kib()
    growth = final - baseline
    # small noise allowed: 8 MiB or 15 % of the warmed-up size, whichever is larger
    assert growth <= max(8 * 1024, baseline * 15 // 100), (baseline, samples, final, done[0])
    assert server.threads() < 64  # handler threads end with their connections
