"""Imports inside mmlib flow one way: along the data flow, never back, and never in a cycle.

The data flow of the study is: raw layout -> cohort -> texts -> embeddings -> models -> predictions ->
metrics -> findings / figures -> chapters -> book. :data:`LAYERS` writes that order down, module by
module. Every ``import`` of every module of mmlib is read with :mod:`ast` -- those inside functions too,
since they run just the same, only later -- and the test checks that

- no module imports a module of a later layer (the same or an earlier layer is fine);
- the import graph has no cycle;
- the loader (``mmlib.data.cohort`` and its readers ``mimic_eye``, ``mds_ed``, ``validate``) imports none of the generator's modules: it reads real and synthetic
  copies alike and takes the layouts' names from ``mmlib.schema`` (likewise ``mmlib.embed`` does not
  import the VLM backends, see :data:`FORBIDDEN`);
- every module of mmlib has a layer (a new module is placed on purpose, here).

Conventions of the graph: ``from pkg import name`` counts as an import of ``pkg.name`` when that is a
module, and of ``pkg`` as well; importing ``a.b.c`` also runs the packages ``a.b`` and ``a``, which count
as imported too, except the packages that contain the importer (Python has run them before it) and the
root package ``mmlib`` (its ``__init__`` holds only a docstring).

The package ``mmlib.data`` (layer 2) re-exports the generator (``generate``, ``synthetic_root``) next to
the loader, for the command line and chapter 01. That import goes back in the flow (layer 2 -> 1) and is
fine; it means that importing ``mmlib.data.cohort`` still runs the package and so the generator, but the
loader module itself depends on nothing of it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mmlib"

#: The data flow, module by module (names relative to ``mmlib``; ``""`` is the root package).
LAYERS: dict[int, tuple[str, ...]] = {
    0: ("", "schema", "artifacts", "hub", "disclosure"),  # layouts' facts; atomic files; local model lookup; disclosure rule
    1: ("data.races", "data.splits", "data.latent", "data.cxr", "data.ecg", "data.synth_base", "data.synth_mimic_eye",
        "data.synth_mds_ed", "data.synth"),  # the generator
    2: ("data.validate", "data.mimic_eye", "data.mds_ed", "data.cohort", "data.prepare", "data"),  # the loader; chapter 01's cohorts; the re-exporting package
    3: ("reports", "cxr_reader", "ecg_reader", "vlm"),  # X-rays and ECGs -> reports
    4: ("text",),  # every modality -> text
    5: ("embed",),  # texts -> embeddings
    6: ("models",),
    7: ("train",),  # models -> predictions
    8: ("metrics",),  # scoring prediction vectors: metrics, bootstrap, summaries
    9: ("missing", "interference", "attribution", "targets"),  # protocols: predict under missing / perturbed modalities, regenerate under other bias knobs, then score; the paper's findings as targets
    10: ("tables", "findings", "plots", "decision", "headlines"),  # findings and figures; the findings box
    11: ("parameters", "pipeline", "book", "pdf"),  # checking parameters, running the chapters, rendering the book
    12: ("chapter", "__main__"),  # what a running chapter asks for (resolves its inputs through the pipeline)
}

#: Imports that the layers allow but the design does not: the loader reads real and synthetic copies
#: with the same code, so it must not depend on the generator or its simulators; the encoders embed texts
#: from any source, so they do not depend on the GPU transcription backends (both use ``mmlib.hub``).
FORBIDDEN = {
    **{loader: ("data.synth", "data.synth_base", "data.synth_mimic_eye", "data.synth_mds_ed", "data.latent", "data.cxr", "data.ecg")
       for loader in ("data.cohort", "data.mimic_eye", "data.mds_ed", "data.validate")},
    "embed": ("vlm",),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _full(name: str) -> str:
    return "mmlib" + (f".{name}" if name else "")


def _short(full: str) -> str:
    return full[len("mmlib."):] if full.startswith("mmlib.") else ""


def _ancestors(name: str) -> list[str]:
    """Packages containing ``name`` (relative names), the root package ``""`` included."""
    parts = name.split(".") if name else []
    return [".".join(parts[:k]) for k in range(len(parts))]


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported module, line) for every import of an mmlib module in ``path``, function bodies included."""
    is_package = path.name == "__init__.py"
    package = _full(name) if is_package else _full(name).rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            if t != "mmlib" and not t.startswith("mmlib."):
                continue
            short = _short(t)
            if short not in modules:
                continue  # ``from pkg import name`` where name is not a module
            for m in [*_ancestors(short), short]:
                if m != name and m not in _ancestors(name):
                    found.append((m, node.lineno))
    return sorted(set(found))


def _graph() -> tuple[dict[str, Path], dict[str, list[tuple[str, int]]]]:
    modules = _modules()
    return modules, {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer_of() -> dict[str, int]:
    out: dict[str, int] = {}
    for layer, names in LAYERS.items():
        for n in names:
            assert n not in out, f"mmlib.{n} is listed in two layers"
            out[n] = layer
    return out


def test_every_module_has_a_layer():
    modules, _ = _graph()
    layer = _layer_of()
    missing = sorted(_full(m) for m in modules if m not in layer)
    assert not missing, (f"modules without a layer: {missing}; add each to LAYERS in tests/test_imports.py "
                         f"where it sits in the data flow")


def test_imports_follow_the_data_flow():
    modules, graph = _graph()
    layer = _layer_of()
    bad = []
    for name, imports in graph.items():
        if name not in layer:
            continue  # reported by test_every_module_has_a_layer
        for target, line in imports:
            if target in layer and layer[target] > layer[name]:
                bad.append(f"{_full(name)} (layer {layer[name]}) imports {_full(target)} (layer {layer[target]}) "
                           f"at {modules[name].relative_to(PACKAGE.parent)}:{line}")
    assert not bad, "imports against the data flow:\n" + "\n".join(bad)


def test_forbidden_imports():
    modules, graph = _graph()
    bad = [f"{_full(name)} imports {_full(target)} at {modules[name].relative_to(PACKAGE.parent)}:{line}"
           for name, banned in FORBIDDEN.items() for target, line in graph.get(name, []) if target in banned]
    assert not bad, "imports the design rules out (see FORBIDDEN):\n" + "\n".join(bad)


def test_no_import_cycles():
    _, graph = _graph()
    edges = {name: sorted({t for t, _ in imports}) for name, imports in graph.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        path.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                cycles.append(" -> ".join(_full(m) for m in cycle))
            elif nxt not in state:
                visit(nxt, path)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles (imports inside functions included):\n" + "\n".join(cycles)


@pytest.mark.parametrize("name", ["schema", "hub", "reports"])
def test_base_modules_import_nothing_of_mmlib(name):
    _, graph = _graph()
    assert graph[name] == [], f"mmlib.{name} must import nothing of mmlib, imports {graph[name]}"


def test_the_graph_reads_function_level_imports():
    """Self-check of the parser: an import inside a function, and ``from . import module``, are seen."""
    _, graph = _graph()
    assert any(t == "data.cxr" for t, _ in graph["data.synth_mimic_eye"])  # inside write_mimic_eye
    assert any(t == "pipeline" for t, _ in graph["__main__"])  # ``from . import pipeline``
