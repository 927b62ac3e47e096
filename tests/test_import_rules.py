"""Import rules of the library, read from the source (an AST walk, nothing is imported):

    production files      libs/optirag/**/*.py, jobs/*.py but jobs/bench_*.py, airflow_dags/**/*.py
      every import statement, at the top or inside a function, and importlib.import_module /
      __import__ calls with a literal name
        -> none may name optirag_bench (benchmarks and experiments: production never
           imports them; what production needs from them lives in production)
    libs/optirag/**/*.py and libs/optirag_bench/**/*.py
      -> the module graph (an edge per import, function-level ones included)
      -> Tarjan's strongly connected components: none may hold two modules (a cycle)

The rule for where an import goes: at the top of its module, unless it is a heavy optional
dependency (torch, transformers, ray, pyspark, great_expectations, matplotlib, sklearn,
llama_cpp, ...) that a module which must stay light to import loads inside the function
that needs it -- never to hide an import cycle, which this test sees through.
"""
from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIBS = REPO / "libs"
BENCH_PACKAGE = "optirag_bench"


def module_name(path: Path, root: Path) -> str:
    """libs/optirag/early_exit/job.py -> optirag.early_exit.job (a package: its __init__)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, root: Path) -> Iterator[tuple[str, int]]:
    """(dotted name, line) of everything `path` imports, anywhere in the file; ``from a.b
    import c`` gives a.b.c, a module or a name in module a.b."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:   # relative: from the file's own package, up level - 1
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
                   or isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))):
            yield node.args[0].value, node.lineno


def bench_imports(files: Iterable[Path], root: Path) -> list[str]:
    """'file:line imports name' for every import of the bench package in `files`."""
    return [f"{path.relative_to(root)}:{line} imports {name}"
            for path in files for name, line in imported_names(path, root)
            if name == BENCH_PACKAGE or name.startswith(BENCH_PACKAGE + ".")]


def import_graph(*package_dirs: Path) -> dict[str, set[str]]:
    """{module: modules of these packages (folders side by side) it imports}; an imported
    name that is not a module counts as its module (``from a.b import f`` -> a.b)."""
    root = package_dirs[0].parent
    files = {module_name(p, root): p for d in package_dirs for p in sorted(d.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = set()
        for imported, _ in imported_names(path, root):
            while imported and imported not in files:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:   # v is the root of a component: pop it
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def production_files() -> list[Path]:
    jobs = [p for p in sorted((REPO / "jobs").glob("*.py")) if not p.name.startswith("bench_")]
    return [*sorted((LIBS / "optirag").rglob("*.py")), *jobs, *sorted((REPO / "airflow_dags").rglob("*.py"))]


def test_production_never_imports_the_bench_package():
    assert (LIBS / BENCH_PACKAGE / "__init__.py").is_file()
    files = production_files()
    assert len(files) > 100 and any(p.parent.name == "airflow_dags" for p in files)
    assert bench_imports(files, REPO) == []


def test_the_library_has_no_import_cycle_even_through_function_level_imports():
    graph = import_graph(LIBS / "optirag", LIBS / BENCH_PACKAGE)
    assert "optirag.early_exit.calibration" in graph["optirag.early_exit.job"]
    assert "optirag.early_exit.job" in graph[f"{BENCH_PACKAGE}.early_exit"]
    assert cycles(graph) == []


# -- the checks themselves, on a small package with both faults ------------------------------

def test_the_checks_see_imports_inside_functions_and_relative_ones(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import g\n    return g\n")
    (pkg / "c.py").write_text("import json\n\ndef g():\n    import pkg.a\n")
    (pkg / "d.py").write_text("def h():\n    from optirag_bench.early_exit import plot\n"
                              "    import importlib\n    importlib.import_module('optirag_bench')\n")
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    assert bench_imports(sorted(pkg.rglob("*.py")), tmp_path) == [
        "pkg/d.py:2 imports optirag_bench.early_exit.plot", "pkg/d.py:4 imports optirag_bench"]
    (pkg / "c.py").write_text("import json\n")
    assert cycles(import_graph(pkg)) == []
