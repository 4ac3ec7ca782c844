"""Key acquisition: SPEKE v2 multi-key round trips and the local key server's requests per second.

The key server runs in its own process (``python -m benchmarks.keybench serve``), so client and
server do not share one GIL. The round trip is the real client (build the CPIX request, POST,
parse and validate the answer); the requests-per-second figure uses N threads, each with its own
HTTP session, POSTing the same prebuilt request, so it measures the server, not our client.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from speke_packager.keys.request import EncryptionContract

ROOT = Path(__file__).resolve().parent.parent


def _contract() -> EncryptionContract:
    from speke_packager.constants import DrmSystem, Packaging, Scheme, SpekeVersion
    from speke_packager.keys.request import EncryptionContract

    return EncryptionContract(
        content_id="bench-content",
        drm=(DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.FAIRPLAY),
        packaging=(Packaging.DASH, Packaging.HLS_FMP4),
        scheme=Scheme.CBCS,
        version=SpekeVersion.V2_0,
        video_preset="PRESET-VIDEO-3",
        audio_preset="PRESET-AUDIO-2",
    )


@dataclass
class KeyServerProcess:
    """The local key server in a child process; ``url`` is its SPEKE endpoint."""

    proc: subprocess.Popen[str]
    url: str

    @classmethod
    def start(cls) -> KeyServerProcess:
        p = subprocess.Popen([sys.executable, "-m", "benchmarks.keybench", "serve"], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        assert p.stdout
        line = p.stdout.readline().strip()
        if not line.startswith("http"):
            err = p.stderr.read() if p.stderr else ""
            p.wait()
            lines = [ln for ln in (line + "\n" + err).splitlines() if ln.strip()]
            raise RuntimeError(lines[-1] if lines else "key server did not start")
        return cls(p, line)

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()  # the server exits when its stdin closes
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _serve() -> int:
    try:
        from speke_packager.keyserver import KeyServer
    except ImportError:  # the package may not re-export it yet
        from speke_packager.keyserver.server import KeyServer

    with KeyServer(host="127.0.0.1", port=0, seed="bench") as ks:
        print(ks.speke_url, flush=True)
        sys.stdin.read()
    return 0


def _percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def round_trips(url: str, n: int) -> dict[str, object]:
    """``n`` sequential SPEKE v2 multi-key requests through the real client; latency in ms."""
    from speke_packager.keys import SpekeClient

    client = SpekeClient(url)
    contract = _contract()
    keyset = client.fetch(contract)  # warm-up (connection, imports); also counts the keys
    nkeys = len(keyset)
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.fetch(contract)
        lat.append((time.perf_counter() - t0) * 1000)
    return {"requests": n, "keys_per_response": nkeys, "p50_ms": statistics.median(lat),
            "p95_ms": _percentile(lat, 95), "max_ms": max(lat)}


def throughput(url: str, clients: int, total: int) -> dict[str, object]:
    """Requests per second of the server with ``clients`` concurrent HTTP clients."""
    import requests

    from speke_packager.keys.request import build_request

    req = build_request(_contract())
    headers = {**req.headers, "Content-Type": "application/xml"}
    local = threading.local()
    errors = 0

    def one(_: int) -> float:
        nonlocal errors
        s = getattr(local, "s", None)
        if s is None:
            s = local.s = requests.Session()
        t0 = time.perf_counter()
        r = s.post(url, data=req.body, headers=headers, timeout=30)
        if r.status_code != 200:
            errors += 1
        return time.perf_counter() - t0

    with ThreadPoolExecutor(clients) as ex:
        list(ex.map(one, range(clients)))  # warm-up: one connection per client
        t0 = time.perf_counter()
        lat = list(ex.map(one, range(total)))
        wall = time.perf_counter() - t0
    return {"clients": clients, "requests": total, "errors": errors, "rps": total / wall,
            "p50_ms": statistics.median(lat) * 1000, "p95_ms": _percentile(lat, 95) * 1000}


def measure_keys(n: int, clients: tuple[int, ...], total: int) -> dict[str, object]:
    """The whole key-acquisition section of the results; ``status`` says why if it could not run."""
    from requests import RequestException

    from speke_packager.errors import SpekePackagerError

    try:
        server = KeyServerProcess.start()
    except (RuntimeError, OSError) as exc:
        return {"status": "unavailable", "note": f"not available yet (key server: {exc})"}
    try:
        try:
            rt = round_trips(server.url, n)
        except ImportError as exc:
            return {"status": "unavailable", "note": f"not available yet (client: {exc})"}
        except (SpekePackagerError, OSError, RequestException) as exc:  # report, go on
            return {"status": "error", "note": f"{type(exc).__name__}: {exc}"[:300]}
        load = [throughput(server.url, c, total) for c in clients]
        return {"status": "ok", "url": server.url, "round_trip": rt, "load": load,
                "contract": "SPEKE v2.0, PRESET-VIDEO-3 + PRESET-AUDIO-2, "
                            "Widevine + PlayReady + FairPlay, DASH + HLS"}
    finally:
        server.stop()


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        raise SystemExit(_serve())
    raise SystemExit("usage: python -m benchmarks.keybench serve")
