"""Package-level checks: public API pinned, import direction, CLI entry point."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import speke_packager

PKG = Path(speke_packager.__file__).parent

# Layers: a module may import only from its own layer or lower ones (STYLE.md §2).
LAYER = {
    "errors": 0, "constants": 0, "_io": 0, "_xml": 0, "_tools": 0, "_httpd": 0,
    "model": 1, "crypto": 1, "drm": 1,
    "keys": 2, "media": 2, "manifests": 2,
    "keyserver": 3, "pipeline": 3, "verify": 4,
    "cli": 5,
}


def test_public_api_pinned() -> None:
    assert set(speke_packager.__all__) >= {
        "ContentKey", "KeySet", "Scheme", "DrmSystem", "SpekePackagerError", "SpekeVersion",
    }


def _top(modname: str) -> str:
    return modname.split(".", maxsplit=1)[0]


def test_imports_point_one_way() -> None:
    bad = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        parts = rel.with_suffix("").parts
        if parts[0] in ("__init__", "__main__"):
            continue
        me = parts[0]
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = list(parts[:-1])
                up = node.level - 1
                base = base[: len(base) - up] if up else base
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                names = [target] if node.module else [f"{target}.{a.name}".lstrip(".")
                                                       for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "speke_packager."):
                names = [node.module[len("speke_packager."):]]  # type: ignore[index]
            else:
                continue
            for n in names:
                other = _top(n) if n else me
                if other == me or other not in LAYER or me not in LAYER:
                    continue
                # keys, media and manifests stand side by side and never import one another
                if LAYER[other] > LAYER[me] or (LAYER[other] == LAYER[me] == 2):
                    bad.append(f"{rel}: imports {n}")
    assert not bad, "\n".join(bad)


def test_cli_entry_points() -> None:
    out = subprocess.run([sys.executable, "-m", "speke_packager", "--help"],
                         capture_output=True, text=True, check=True)
    assert "speke-packager" in out.stdout
