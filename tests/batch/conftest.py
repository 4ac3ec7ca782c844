"""encrypt-batch tests: a batch of real assets (ffmpeg media, keys from the local key server),
real executors (worker processes, a Dask LocalCluster on 127.0.0.1, plain and TLS), every output
decrypted independently (FFmpeg 8, openssl) and compared with the clear source's frames."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.s3server import aws_env, bucket, moto_server, proxy  # noqa: F401 (test_s3.py)
from tests.vod.conftest import concat, frames, key_file, key_lines, packages, tenc  # noqa: F401

# (scheme, format, drm, source) of the five good assets: every scheme, both formats
GOOD = {
    "dash-cenc": ("cenc", "dash", "widevine,playready", "h264-aac-mp4"),
    "hls-cbcs": ("cbcs", "hls", "fairplay", "h264-aac-mp4"),
    "both-cbcs": ("cbcs", "both", "widevine,playready,fairplay", "h264-aac-mp4"),
    "hls-aes128": ("aes-128", "hls", "aes-128", "h264-aac-ts"),
    "hls-sample-aes": ("sample-aes", "hls", "fairplay,aes-128", "h264-aac-ts"),
}


def cid(asset: str) -> str:
    return f"cid-{asset}"


def good_rows(media: Callable[[str], Path], out_root: Path) -> list[dict[str, Any]]:
    return [{"id": a, "input": str(media(src)), "output": str(out_root / a), "scheme": scheme,
             "format": fmt, "drm": drm, "content_id": cid(a), "segment_duration": 2}
            for a, (scheme, fmt, drm, src) in GOOD.items()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def batch_cli(*args: str, timeout: float = 600, debug: bool = False
              ) -> subprocess.CompletedProcess[str]:
    pre = ["--log-level", "debug"] if debug else []
    return subprocess.run([sys.executable, "-m", "speke_packager", *pre, "encrypt-batch", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def by_asset(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["asset"]: a for a in report["assets"]}


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _last_segment_twice(playlist: Path) -> Path:
    """FFmpeg never decrypts the last SAMPLE-AES video PES of a playlist
    (media-encryption.md §9): a copy that repeats the last segment after a discontinuity."""
    lines = playlist.read_text().splitlines()
    end = lines.index("#EXT-X-ENDLIST")
    last = max(i for i, ln in enumerate(lines) if ln.startswith("#EXTINF"))
    lines[end:end] = ["#EXT-X-DISCONTINUITY", *lines[last:end]]
    copy = playlist.with_name("test-copy.m3u8")
    copy.write_text("\n".join(lines) + "\n")
    return copy


def _fmp4_reps(out: Path, src: Path, content_id: str, keyserver: Any, tmp: Path) -> None:
    for rep, stream in (("0", "v:0"), ("1", "a:0")):
        init = out / rep / "init.mp4"
        segs = sorted((out / rep).glob("segment_*.m4s"))
        assert init.exists() and len(segs) >= 2, sorted(out.rglob("*"))
        kid = tenc(init.read_bytes())["kid"]
        assert isinstance(kid, UUID)
        key = keyserver.key_for(content_id, kid)
        track = concat(tmp / f"{out.name}-{rep}.mp4", [init, *segs])
        ref = frames(src, stream)
        assert ref
        assert frames(track, stream, key=key) == ref
        assert frames(track, stream) != ref  # really encrypted
        wrong = bytes(b ^ 1 for b in key)
        assert frames(track, stream, key=wrong) != ref  # negative control


def verify_asset(asset: str, out: Path, media: Callable[[str], Path], keyserver: Any,
                 tmp: Path) -> None:
    """Decrypt ``asset``'s output independently and compare with the clear source's frames."""
    scheme, fmt, _, src_name = GOOD[asset]
    src = media(src_name)
    assert (out / ".speke-packager-complete.json").is_file()
    if scheme in ("cenc", "cbcs"):
        _fmp4_reps(out, src, cid(asset), keyserver, tmp)
        if fmt in ("hls", "both"):  # FFmpeg's HLS reader: SESSION-KEY / KEY lines present
            master = (out / "master.m3u8").read_text()
            assert key_lines(master, "#EXT-X-SESSION-KEY")
        if fmt in ("dash", "both"):
            assert "ContentProtection" in (out / "manifest.mpd").read_text()
        else:
            assert not (out / "manifest.mpd").exists()
        return
    assert not (out / "manifest.mpd").exists()
    video = out / "video0" / "index.m3u8"
    audio = out / "audio0" / "index.m3u8"
    for pl in (video, audio):
        ident = [k for k in key_lines(pl.read_text()) if k.get("KEYFORMAT", "identity")
                 == "identity"]
        assert len(ident) == 1 and ident[0]["URI"].startswith(keyserver.url)
    ref_v, ref_a = frames(src, "v:0"), frames(src, "a:0")
    assert ref_v and ref_a
    seg = sorted((out / "video0").glob("*.ts"))[0].read_bytes()
    assert seg[0] != 0x47 or seg[188] != 0x47 or scheme == "sample-aes"
    if scheme == "aes-128":
        # FFmpeg fetches the key from the key server's identity URI and decrypts
        assert frames(video, "v:0", hls=True) == ref_v
        assert frames(video, "v:0") != ref_v
    else:
        copy = _last_segment_twice(video)
        got = frames(copy, "v:0", hls=True)
        copy.unlink()  # (the output must stay as written: its completion manifest lists it)
        assert got is not None and got[:len(ref_v)] == ref_v
        assert frames(video, "v:0") != ref_v  # the TS alone does not decode to the source
    assert frames(audio, "a:0", hls=True) == ref_a


def assert_no_key(text: str, keys: list[bytes]) -> None:
    import base64

    low = text.lower()
    for k in keys:
        assert k.hex() not in low
        assert base64.b64encode(k).decode() not in text
        assert base64.urlsafe_b64encode(k).decode().rstrip("=") not in text


def asset_keys(out: Path, content_id: str, keyserver: Any) -> list[bytes]:
    """Every content key of an output (KIDs from its completion manifest)."""
    doc = json.loads((out / ".speke-packager-complete.json").read_text())
    return [keyserver.key_for(content_id, UUID(k)) for k in doc["kids"]]


# ---- TLS material made here: a CA, a certificate for the cluster, one for the client ----------

def make_tls(folder: Path) -> dict[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> str:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        os.chmod(path, 0o600)
        return str(path)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("batch test CA"))
          .issuer_name(name("batch test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    out = {"ca": str(folder / "ca.pem")}
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    import ipaddress

    for who in ("cluster", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(f"batch {who}"))
                .issuer_name(ca.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                     x509.DNSName("localhost")]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        (folder / f"{who}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{who}_cert"] = str(folder / f"{who}.pem")
        out[f"{who}_key"] = write_key(key, folder / f"{who}-key.pem")
    return out


@pytest.fixture()
def tls_cluster(tmp_path: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    """A Dask LocalCluster on 127.0.0.1 with two worker processes, TLS only (certificates made
    above; the client needs its own certificate signed by the CA)."""
    from distributed import LocalCluster
    from distributed.security import Security

    tls = make_tls(tmp_path / "tls")
    sec = Security(tls_ca_file=tls["ca"], tls_scheduler_cert=tls["cluster_cert"],
                   tls_scheduler_key=tls["cluster_key"], tls_worker_cert=tls["cluster_cert"],
                   tls_worker_key=tls["cluster_key"], tls_client_cert=tls["cluster_cert"],
                   tls_client_key=tls["cluster_key"], require_encryption=True)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      protocol="tls://", security=sec, dashboard_address=":0",
                      memory_limit="1GiB") as cluster:
        yield cluster, tls


@pytest.fixture()
def tcp_cluster() -> Iterator[Any]:
    """A plain-TCP Dask LocalCluster on 127.0.0.1 with two worker processes."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0", memory_limit="1GiB") as cluster:
        yield cluster
