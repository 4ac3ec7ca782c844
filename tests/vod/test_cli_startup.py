"""Start-up cost of the CLI: building the parser must not import the heavy parts."""

from __future__ import annotations

import subprocess
import sys

from speke_packager.cli.vod_cmd import FORMAT_CHOICES
from speke_packager.pipeline.options import OutputFormat

_HEAVY = ("requests", "urllib3", "numpy", "lxml", "cryptography", "botocore", "rich",
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
