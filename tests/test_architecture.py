"""The project's layers, checked from its source: imports point one way and never in a cycle.

storage/ is the bottom layer (the database, the model registry, the dialogue format);
trainer/ and bot/ stand on it. The bot reaches the trainer only through its light,
public surface (its options, its exports, what its extra needs) and runs training as a
separate process; the trainer never imports the bot. Every import counts, those inside
functions included, since a late import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import trainer

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "trainer", "storage", "bench")

# What each layer may import from the project (besides itself).
ALLOWED = {
    "storage": set(),
    "trainer": {"storage"},
    "bot": {"storage", "trainer"},
    "bench": {"storage", "trainer", "bot"},
}
# The trainer's public surface for the bot, declared once (light modules: standard library, fsspec,
# pydantic and storage only).
TRAINER_PUBLIC = set(trainer.PUBLIC)


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)  # `from bot import stats`


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in its body)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = {
            target
            for target in _imported_names(tree, name, path.name == "__init__.py")
            if target in modules and target != name
        }
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:  # noqa: C901  Tarjan's algorithm as usually written
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walker_sees_function_level_and_relative_imports() -> None:
    tree = ast.parse("import os\nfrom . import b\ndef f():\n    from bot.c import d\n    import storage.x\n")
    names = set(_imported_names(tree, "bot.adapters.a", is_package=False))
    assert {"bot.adapters.b", "bot.c", "bot.c.d", "storage.x"} <= names
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_graph_is_the_projects() -> None:
    graph = import_graph()
    assert "bot.service" in graph and "storage.repository" in graph["bot.service"]
    assert "storage.database" in graph["storage.repository"]


def test_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(cycle) for cycle in found)


def test_layers_point_one_way() -> None:
    wrong = []
    for module, targets in import_graph().items():
        layer = module.split(".")[0]
        for target in sorted(targets):
            other = target.split(".")[0]
            if other != layer and other not in ALLOWED[layer]:
                wrong.append(f"{module} -> {target}")
            elif layer == "bot" and other == "trainer" and target not in TRAINER_PUBLIC:
                wrong.append(f"{module} -> {target} (the bot uses only {sorted(TRAINER_PUBLIC)})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_the_trainers_public_surface_is_light() -> None:
    """What the bot imports from the trainer needs neither torch nor the train extra."""
    graph = import_graph()
    heavy = {"torch", "transformers", "trl", "peft", "datasets", "accelerate", "sacrebleu"}
    seen, todo = set(), list(TRAINER_PUBLIC)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += graph[module]
    for module in sorted(seen):
        tree = ast.parse(project_modules()[module].read_text(encoding="utf-8"))
        top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        names = {alias.name for node in top_level if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module or "" for node in top_level if isinstance(node, ast.ImportFrom)}
        assert not {name.split(".")[0] for name in names} & heavy, f"{module} imports {names & heavy}"


def test_every_module_in_bot_adapters_is_a_platform_behind_the_contract() -> None:
    """A new platform is one new module or package: it is found, named after it, and speaks the contract."""
    from bot.adapters import PLATFORMS
    from bot.adapters.base import Adapter, adapter_class

    assert set(PLATFORMS) == {"discord", "shell", "slack"}
    for name in PLATFORMS:
        adapter = adapter_class(name)
        assert issubclass(adapter, Adapter) and adapter.platform == name
        assert not getattr(adapter, "__abstractmethods__", None), f"{name} leaves {adapter.__abstractmethods__} open"
