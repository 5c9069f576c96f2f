"""The package's shape: imports flow one way, no import cycle, no loose helper module at the top.

Layers, lowest first; a module may import its own layer and the ones below, never above:
core ← data ← training ← components (pairranker, genfuser, packllm) ← pipeline, hub ← commands ←
the entry points (train.py, infer.py). Components do not import each other, nor do pipeline and hub.
"""

from __future__ import annotations

import ast
import os

from helpers import ROOT

LAYERS = {"core": 0, "data": 1, "training": 2, "pairranker": 3, "genfuser": 3, "packllm": 3, "pipeline": 4,
          "hub": 4, "commands": 5, "train": 6, "infer": 6}
# Imports inside functions are for optional heavy dependencies only.
OPTIONAL_IMPORTS = ("matplotlib", "pytorch_lightning.utilities.deepspeed", "deepspeed")
ENTRY_POINTS = {"__init__.py", "train.py", "infer.py"}
NOT_PACKAGE = {".venv", ".git", "tests", "benchmarks", "configs", "constraints", "runs", "build", "dist",
               "blendkit.egg-info", "__pycache__", "lightning_logs", ".ci"}


def _modules() -> dict[str, str]:
    """Dotted module name (``blendkit.pairranker.model``) -> file, for every module of the package."""
    found = {}
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in NOT_PACKAGE and not d.startswith("."))
        rel = os.path.relpath(folder, ROOT)
        prefix = "blendkit" if rel == "." else "blendkit." + rel.replace(os.sep, ".")
        for name in files:
            if name.endswith(".py"):
                module = prefix if name == "__init__.py" else f"{prefix}.{name[:-3]}"
                found[module] = os.path.join(folder, name)
    return found


def _imports(module: str, path: str) -> list[tuple[str, bool]]:
    """(imported blendkit module or external name, imported at module level?) for each import statement."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, id(node) not in in_function) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            out.append((target, id(node) not in in_function))
            # `from . import x` imports the module x
            out += [(f"{target}.{alias.name}", id(node) not in in_function) for alias in node.names]
    return out


def _internal(modules: dict[str, str]) -> dict[str, set[str]]:
    graph = {}
    for module, path in modules.items():
        graph[module] = {target for target, top in _imports(module, path) if top and target in modules
                         and target != module}
    return graph


def _layer(module: str) -> tuple[str, int]:
    part = module.split(".")[1] if "." in module else ""
    return part, LAYERS.get(part, -1)


def test_the_top_level_holds_only_entry_points_and_named_folders():
    loose = sorted(name for name in os.listdir(ROOT) if name.endswith(".py") and name not in ENTRY_POINTS)
    assert loose == [], f"loose modules at the top level: {loose}; give them a named folder"
    folders = {m.split(".")[1] for m in _modules() if m.count(".") >= 1}
    assert folders <= set(LAYERS), f"folders without a layer: {folders - set(LAYERS)}"


def test_imports_flow_one_way_between_layers():
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        part, layer = _layer(module)
        for target, _ in _imports(module, path):
            if not target or not target.startswith("blendkit.") or target not in modules:
                continue
            other, other_layer = _layer(target)
            if other_layer > layer or (other_layer == layer and other != part and layer in (3, 4)):
                wrong.append(f"{module} imports {target}")
    assert wrong == [], "imports against the layer order:\n" + "\n".join(sorted(wrong))


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_there_is_no_import_cycle():
    cycle = _find_cycle(_internal(_modules()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_see_relative_imports_and_cycles(tmp_path):
    """The checks above can fail: a relative import is resolved, and a two-module cycle is found."""
    (tmp_path / "hub").mkdir()
    path = tmp_path / "hub" / "export.py"
    path.write_text("from ..pairranker.module import X\nfrom . import push\n\ndef f():\n    import torch\n")
    assert _imports("blendkit.hub.export", str(path)) == [
        ("blendkit.pairranker.module", True), ("blendkit.pairranker.module.X", True),
        ("blendkit.hub", True), ("blendkit.hub.push", True), ("torch", False)]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_inside_functions_are_only_for_optional_dependencies():
    late = []
    for module, path in _modules().items():
        for target, top in _imports(module, path):
            if not top and not any(target == name or target.startswith(name + ".") for name in OPTIONAL_IMPORTS):
                late.append(f"{module}: {target}")
    assert late == [], "imports inside functions (move them to the top):\n" + "\n".join(sorted(set(late)))


def test_importing_the_ranker_does_not_load_datasets_or_lightning():
    import subprocess
    import sys

    code = ("import sys, blendkit.pairranker, blendkit.genfuser.inference; "
            "print(sorted(m for m in ('datasets', 'pytorch_lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_ruff_finds_nothing():
    """The style the project keeps (pyproject.toml: pycodestyle, pyflakes, isort, 120 columns)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
