"""Start-up cost of the CLI: building the parser must not import the heavy parts."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from speke_packager.cli.vod_cmd import FORMAT_CHOICES
from speke_packager.pipeline.options import OutputFormat

_HEAVY = ("requests", "urllib3", "numpy", "lxml", "cryptography", "botocore", "rich", "http",
          "ssl", "email", "speke_packager._httpd",
          "speke_packager.pipeline", "speke_packager.keys", "speke_packager.keyserver",
          "speke_packager.media", "speke_packager.manifests")


def test_build_parser_imports_no_heavy_module() -> None:
    code = ("import sys, json; from speke_packager.cli import build_parser; build_parser(); "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    import json

    loaded = json.loads(out)
    heavy = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in _HEAVY)]
    assert heavy == []
    assert "speke_packager.cli.vod_cmd" in loaded  # the sub-commands were registered


def test_format_choices_match_the_option_enum() -> None:
    assert tuple(f.value for f in OutputFormat) == FORMAT_CHOICES


def test_hls_job_never_imports_the_dash_writer(packages: Callable[[str], Path],
                                                tmp_path: Path) -> None:
    """An HLS package with raw keys runs without lxml, the MPD writer or the SPEKE client
    (start-up time of every encrypt-vod run)."""
    src = packages("hls-fmp4")
    code = ("import sys, json; from speke_packager.cli import main; "
            f"rc = main(['encrypt-vod', {str(src)!r}, '--output', {str(tmp_path / 'out')!r}, "
            "'--scheme', 'cbcs', '--key-uri', 'https://127.0.0.1/k/{kid}', "
            "'--key', '00112233445566778899aabbccddeeff:"
            "0123456789abcdef0123456789abcdef', '--quiet']); "
            "print(json.dumps([rc, sorted(sys.modules)]))")
    p = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                       text=True)
    import json

    rc, loaded = json.loads(p.stdout.splitlines()[-1])
    assert rc == 0, p.stderr
    assert (tmp_path / "out" / src.name).exists()
    unwanted = ("lxml", "requests", "botocore", "speke_packager.manifests.dash",
                "speke_packager.pipeline.dash_job", "speke_packager.keys.client")
    assert [m for m in loaded if any(m == u or m.startswith(u + ".") for u in unwanted)] == []


def _modules_after_run(src: Path, out: Path, scheme: str) -> list[str]:
    code = ("import sys, json; from speke_packager.cli import main; "
            f"rc = main(['encrypt-vod', {str(src)!r}, '--output', {str(out)!r}, "
            f"'--scheme', {scheme!r}, '--key-uri', 'https://127.0.0.1/k/{{kid}}', "
            "'--key', '00112233445566778899aabbccddeeff:"
            "0123456789abcdef0123456789abcdef', '--quiet']); "
            "print(json.dumps([rc, sorted(sys.modules)]))")
    p = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                       text=True)
    import json

    rc, loaded = json.loads(p.stdout.splitlines()[-1])
    assert rc == 0, p.stderr
    return [str(m) for m in loaded]


def test_each_container_loads_only_its_own_media_code(packages: Callable[[str], Path],
                                                      tmp_path: Path) -> None:
    """A CMAF package never imports the MPEG-TS code and a TS package never the MP4 code:
    start-up is a measurable share of a short encrypt-vod run."""
    fmp4 = _modules_after_run(packages("hls-fmp4"), tmp_path / "a", "cbcs")
    assert "speke_packager.media.mp4.encryptor" in fmp4  # (it did encrypt)
    assert [m for m in fmp4 if m.startswith("speke_packager.media.ts")] == []
    # cbcs runs on worker threads: no process pool, no HTTP stack
    assert [m for m in fmp4 if m.split(".")[0] in ("multiprocessing", "http", "ssl")] == []
    ts = _modules_after_run(packages("hls-ts"), tmp_path / "b", "sample-aes")
    assert "speke_packager.media.ts.sample_aes" in ts
    assert [m for m in ts if m.startswith("speke_packager.media.mp4")] == []


def test_program_exit_keeps_codes_and_log_files(packages: Callable[[str], Path],
                                                tmp_path: Path) -> None:
    """``python -m speke_packager`` (console_main: gc.freeze before shutdown) still exits with
    the command's code and flushes a --log-file; the script entry point names it."""
    import tomllib

    from speke_packager import cli

    script = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    target = script["project"]["scripts"]["speke-packager"]
    assert target == "speke_packager.cli:console_main" and callable(cli.console_main)
    log = tmp_path / "run.log"
    key = "00112233445566778899aabbccddeeff:0123456789abcdef0123456789abcdef"
    ok = subprocess.run([sys.executable, "-m", "speke_packager", "--log-level", "debug",
                         "--log-file", str(log), "encrypt-vod", str(packages("hls-fmp4")),
                         "--output", str(tmp_path / "out"), "--scheme", "cbcs", "--key", key,
                         "--key-uri", "https://127.0.0.1/k/{kid}", "--quiet"],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "speke-packager encrypt-vod" in log.read_text()
    bad = subprocess.run([sys.executable, "-m", "speke_packager", "encrypt-vod",
                          str(tmp_path / "missing.m3u8"), "--output", str(tmp_path / "o2"),
                          "--key", key], capture_output=True, text=True, check=False)
    assert bad.returncode != 0 and "does not exist" in bad.stderr
