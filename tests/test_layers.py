"""The layers hold: each module imports only its own layer and those below, and no modules import each other in a
circle. Every import counts, a lazy one inside a function included.

    tao.core            the foundation: types, config, errors, prompts files, storage, the base model
    rollouts            generation engines and exploration strategies, on the foundation
    reward              scorers, on the foundation (the LLM judge generates with a rollouts engine)
    tao (the rest)      the loop, the run directory, the update, the commands and the CLI
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tao", "rollouts", "reward")
# Each layer may import the layers listed for it (and itself).
ALLOWED = {
    "core": {"core"},
    "rollouts": {"core", "rollouts"},
    "reward": {"core", "rollouts", "reward"},
    "top": {"core", "rollouts", "reward", "top"},
}


def layer(module: str) -> str:
    if module == "tao.core" or module.startswith("tao.core."):
        return "core"
    if module.split(".")[0] in ("rollouts", "reward"):
        return module.split(".")[0]
    return "top"


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            out[name] = path
    return out


def imports(root: Path) -> dict[str, set[str]]:
    """Each module's imports of the project's own modules (``from a import b`` counts ``a.b`` when it is one)."""
    known = modules(root)
    found: dict[str, set[str]] = defaultdict(set)
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]  # a module, else a name in node.module
            for target in targets:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name and target.split(".")[0] in PACKAGES:
                    found[name].add(target)
    return found


def upward(root: Path) -> list[str]:
    """Imports that go from a layer to one it may not use."""
    return sorted(
        f"{source} imports {target}"
        for source, targets in imports(root).items()
        for target in targets
        if layer(target) not in ALLOWED[layer(source)]
    )


def circles(root: Path) -> list[list[str]]:
    """Import cycles (each as the modules on it), by depth-first search over every import. A package's own
    ``__init__`` imported by its modules does not count as a cycle with them."""
    graph = imports(root)
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if node.startswith(nxt + "."):  # a module importing its own package
                continue
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_layer_imports_one_above_it():
    assert upward(ROOT) == []


def test_no_modules_import_each_other_in_a_circle():
    assert circles(ROOT) == []


def test_a_planted_upward_import_and_a_planted_circle_are_caught(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "tao" / "core").mkdir()
    (tmp_path / "tao" / "core" / "__init__.py").write_text("")
    (tmp_path / "tao" / "loop.py").write_text("from tao.core import types\n")
    (tmp_path / "tao" / "core" / "types.py").write_text("def f():\n    from tao import loop  # upward, and a circle\n")
    (tmp_path / "rollouts" / "engine.py").write_text("import reward.scorer\n")
    (tmp_path / "reward" / "scorer.py").write_text("from rollouts import engine\n")
    assert upward(tmp_path) == ["rollouts.engine imports reward.scorer", "tao.core.types imports tao.loop"]
    assert sorted(tuple(c) for c in circles(tmp_path)) == [
        ("reward.scorer", "rollouts.engine", "reward.scorer"),
        ("tao.core.types", "tao.loop", "tao.core.types"),
    ]
