"""Bounded memory: a length field that claims gigabytes must not make us allocate gigabytes.

Two independent measurements: the whole binary corpus replayed in a child process whose address
space is capped with RLIMIT_AS (an attempted 4 GB allocation is a MemoryError there, which is not
a typed error and fails the test), and tracemalloc peaks in-process for the 4 GB box claims.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tracemalloc
from pathlib import Path
from uuid import UUID

import pytest

from speke_packager.constants import Scheme
from speke_packager.errors import ManifestError, SpekePackagerError
from speke_packager.media.mp4 import Mp4Encryptor, probe_init
from speke_packager.model import ContentKey

from .conftest import CORPUS, KEY, ROOT, cli, corpus, fmp4_seeds, run_py

pytestmark = pytest.mark.timeout(300)

LIMIT = 1 << 30  # 1 GiB of address space: plenty for us, far below any 4 GB claim

_REPLAY = f"""
import resource, sys, traceback
from pathlib import Path
from uuid import UUID
resource.setrlimit(resource.RLIMIT_AS, ({LIMIT}, {LIMIT}))
from speke_packager.constants import Scheme
from speke_packager.errors import ManifestError, SpekePackagerError
from speke_packager.media.mp4 import Mp4Encryptor, probe_init
from speke_packager.media.ts import encrypt_sample_aes, probe_ts
from speke_packager.model import ContentKey
ck = ContentKey(UUID(int=7), bytes(16))
init = Path(sys.argv[1]).read_bytes()
enc = Mp4Encryptor(init, Scheme.CENC, {{1: ck}}, iv_seed=b"m")
calls = {{
    "mp4-init": [probe_init, lambda d: Mp4Encryptor(d, Scheme.CBCS, {{1: ck}})],
    "mp4-segment": [lambda d: enc.encrypt_segment(d, segment_index=0)],
    "ts": [probe_ts, lambda d: encrypt_sample_aes(d, bytes(16), bytes(16))],
}}
bad = []
for target, fns in calls.items():
    for path in sorted(Path(sys.argv[2], target).iterdir()):
        for fn in fns:
            try:
                fn(path.read_bytes())
            except SpekePackagerError:
                pass
            except BaseException as exc:
                bad.append(f"{{target}}/{{path.name}}: {{type(exc).__name__}}: {{exc}}")
print("\\n".join(bad) or "clean")
"""


def test_corpus_under_address_space_limit(tmp_path: Path) -> None:
    init = tmp_path / "init.mp4"
    init.write_bytes(fmp4_seeds()["h264-fmp4"][0])
    proc = subprocess.run([sys.executable, "-c", _REPLAY, str(init), str(CORPUS)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT, check=False,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "clean", proc.stdout


def test_limit_is_effective() -> None:
    """Control: the same cap really turns a 4 GB allocation into a MemoryError."""
    proc = run_py(f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({LIMIT}, {LIMIT}))\n"
                  "try:\n    bytearray(4 << 30)\nexcept MemoryError:\n    print('capped')")
    assert proc.stdout.strip() == "capped"


@pytest.mark.parametrize("path", [p for t in ("mp4-init", "mp4-segment") for p in corpus(t)
                                  if "4G" in p.name or "1TB" in p.name], ids=lambda p: p.name)
def test_huge_claims_allocate_little(path: Path) -> None:
    init = fmp4_seeds()["h264-fmp4"][0]
    enc = Mp4Encryptor(init, Scheme.CENC, {1: ContentKey(UUID(int=7), KEY)}, iv_seed=b"m")
    data = path.read_bytes()
    tracemalloc.start()
    try:
        try:
            if path.parent.name == "mp4-init":
                probe_init(data)
            else:
                enc.encrypt_segment(data, segment_index=0)
        except SpekePackagerError:
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"peak {peak} bytes for a {len(data)}-byte input"


def _hls_package(tmp_path: Path, last_length: int | None) -> Path:
    """A clear HLS fMP4 package of one file addressed by byte ranges (real ffmpeg media)."""
    init, segs = fmp4_seeds()["h264-fmp4"]
    src = tmp_path / "src"
    src.mkdir()
    (src / "media.mp4").write_bytes(init + b"".join(segs))
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:4", "#EXT-X-PLAYLIST-TYPE:VOD",
             f'#EXT-X-MAP:URI="media.mp4",BYTERANGE="{len(init)}@0"']
    off = len(init)
    for i, s in enumerate(segs):
        length = last_length if (last_length is not None and i == len(segs) - 1) else len(s)
        lines += ["#EXTINF:2.0,", f"#EXT-X-BYTERANGE:{length}@{off}", "media.mp4"]
        off += len(s)
    lines.append("#EXT-X-ENDLIST")
    (src / "index.m3u8").write_text("\n".join(lines) + "\n")
    return src / "index.m3u8"


def _encrypt_capped(playlist: Path, out: Path) -> subprocess.CompletedProcess[str]:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 * LIMIT, 2 * LIMIT))

    return subprocess.run(
        [sys.executable, "-m", "speke_packager", "encrypt-vod", str(playlist), "-o", str(out),
         "--scheme", "cenc", "--key", f"{'5a' * 16}:{KEY.hex()}", "--jobs", "1", "--quiet",
         "--key-uri", "https://keys.example/{kid}", "--format", "hls"],
        capture_output=True, text=True, timeout=240, cwd=ROOT, check=False, preexec_fn=cap,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_byterange_control_encrypts_under_cap(tmp_path: Path) -> None:
    """Control for the next test: honest byte ranges encrypt fine under the same cap."""
    proc = _encrypt_capped(_hls_package(tmp_path, None), tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert (tmp_path / "out").is_dir()


def test_byterange_claiming_4gb_is_a_typed_error(tmp_path: Path) -> None:
    proc = _encrypt_capped(_hls_package(tmp_path, 1 << 32), tmp_path / "out")
    assert proc.returncode == ManifestError.exit_code, proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    assert "byte range" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_helper_works() -> None:
    assert cli("--version").returncode == 0
