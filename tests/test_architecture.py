"""The layers of docs/architecture.md, enforced: every import of every module of the package
(module level, inside functions and under TYPE_CHECKING alike, read with ``ast``) must follow
the rules below, and no two modules may import each other, directly or round a loop."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

import speke_packager

PKG = Path(speke_packager.__file__).parent
ROOT = "speke_packager"

# The base layer: imported by everyone, imports (almost) nothing.
BASE = frozenset({"errors", "constants", "model", "_io", "_xml", "_hls_attrs", "_tools", "_redact",
                  "_httpd", "crypto"})
# Every layer (top-level module or sub-package of speke_packager) and what it may import
# besides itself. "(package)" is speke_packager/__init__.py, the public facade.
RULES: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "constants": frozenset({"errors"}),
    "model": frozenset({"errors", "constants"}),
    "_io": frozenset({"errors", "constants"}),
    "_xml": frozenset({"errors", "constants"}),
    "_hls_attrs": frozenset({"errors", "constants"}),
    "_tools": frozenset({"errors", "constants"}),
    "_redact": frozenset(),
    "_httpd": frozenset({"errors", "constants"}),
    "crypto": frozenset({"errors", "constants"}),
    "drm": BASE,
    "keys": BASE | {"drm"},
    "manifests": BASE | {"drm"},
    "keyserver": BASE | {"drm"},
    # deliberately independent of media/keys/manifests; serve shares the ClearKey licence and
    # raw-key endpoints of the key server
    "verify": BASE | {"drm", "keyserver", "storage"},
    "media": BASE,
    # object storage: botocore and base only; pipeline and verify read and write through it
    "storage": BASE,
    "pipeline": BASE | {"drm", "keys", "manifests", "media", "storage"},
    "conformance": BASE | {"drm", "keys"},  # checks a key server through the client
    "(package)": BASE | {"drm", "keys", "manifests", "media", "keyserver", "verify",
                         "pipeline", "conformance", "storage"},
    "cli": BASE | {"drm", "keys", "manifests", "media", "keyserver", "verify", "pipeline",
                   "conformance", "storage", "(package)"},
    "__main__": frozenset({"cli"}),
}
# Inside media: codecs and the AES-128 whole-segment cipher stand alone; the container
# encryptors use codecs (and fMP4 the subsample maps); mp4 and ts never import each other.
MEDIA_RULES: dict[str, frozenset[str]] = {
    "aes128": frozenset(),
    "codecs": frozenset(),
    "subsamples": frozenset({"codecs"}),
    "mp4": frozenset({"codecs", "subsamples"}),
    "ts": frozenset({"codecs"}),
}


def modules(pkg: Path = PKG) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(pkg.rglob("*.py")):
        parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom,
             known: Mapping[str, Path]) -> Iterable[str]:
    """The package modules an import statement of module ``name`` refers to."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == ROOT or alias.name.startswith(ROOT + "."):
                target = alias.name
                while target not in known:
                    target = target.rsplit(".", 1)[0]
                yield target
        return
    if node.level:
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
        if not (target == ROOT or target.startswith(ROOT + ".")):
            return
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        yield sub if sub in known else target


def import_graph(pkg: Path = PKG) -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in its source)."""
    known = modules(pkg)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(t for t in _targets(name, path, node, known) if t != name)
        graph[name] = edges
    return graph


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(package)"


def violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    bad = []
    for mod, targets in graph.items():
        mine = layer(mod)
        for t in targets:
            theirs = layer(t)
            if theirs != mine and theirs not in RULES.get(mine, frozenset()):
                bad.append(f"{mod} imports {t} ({mine} may not import {theirs})")
            parts, tparts = mod.split("."), t.split(".")
            if mine == theirs == "media" and len(parts) > 2 and len(tparts) > 2 \
                    and parts[2] != tparts[2] and tparts[2] not in MEDIA_RULES[parts[2]]:
                bad.append(f"{mod} imports {t} (media.{parts[2]} may not import "
                           f"media.{tparts[2]})")
    return bad


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in graph:
                    continue
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


GRAPH = import_graph()


def test_every_layer_has_rules() -> None:
    assert {layer(m) for m in GRAPH} == set(RULES)
    media = {m.split(".")[2] for m in GRAPH if layer(m) == "media" and m.count(".") >= 2}
    assert media == set(MEDIA_RULES)


def test_imports_follow_the_layers() -> None:
    bad = violations(GRAPH)
    assert not bad, "\n".join(bad)


def test_no_import_circles() -> None:
    found = cycles(GRAPH)
    assert not found, "\n".join(" <-> ".join(c) for c in found)


def test_the_graph_sees_lazy_and_type_checking_imports() -> None:
    """What the checks read: imports inside functions (pipeline/__init__'s live API) and
    under TYPE_CHECKING (the public facade) are edges too."""
    assert "speke_packager.pipeline.live" in GRAPH["speke_packager.pipeline"]
    assert "speke_packager.keyserver" in GRAPH["speke_packager"]
    assert "speke_packager.media.mp4.boxes" in GRAPH["speke_packager.media.mp4.encryptor"]


@pytest.mark.parametrize(("edge", "why"), [
    (("speke_packager.media.mp4.init", "speke_packager.drm.pssh"), "media may not import drm"),
    (("speke_packager.keys.client", "speke_packager.manifests.hls"),
     "keys may not import manifests"),
    (("speke_packager.verify.package", "speke_packager.media.mp4.boxes"),
     "verify may not import media"),
    (("speke_packager.errors", "speke_packager.model"), "errors may not import model"),
    (("speke_packager.pipeline.vod", "speke_packager.cli"), "pipeline may not import cli"),
    (("speke_packager.media.ts.pes", "speke_packager.media.mp4.boxes"),
     "media.ts may not import media.mp4"),
])
def test_a_forbidden_import_is_reported(edge: tuple[str, str], why: str) -> None:
    graph = {m: set(t) for m, t in GRAPH.items()}
    graph[edge[0]].add(edge[1])
    bad = violations(graph)
    assert len(bad) == 1 and why in bad[0]


def test_a_circle_is_reported() -> None:
    graph = {m: set(t) for m, t in GRAPH.items()}
    graph["speke_packager.media.mp4.boxes"].add("speke_packager.media.mp4.encryptor")
    found = cycles(graph)
    assert len(found) == 1
    assert {"speke_packager.media.mp4.boxes", "speke_packager.media.mp4.encryptor"} <= \
        set(found[0])
