"""The package layout is the architecture: which part may import which, checked over the source.

Every `import liftdeploy...` in the package (at module level or inside a function) is an edge
between parts; an edge not in ALLOWED fails. Inside a part, the imports between its modules
(again at module level or inside a function; `if TYPE_CHECKING:` ones excepted) form no cycle,
so each module can be read after the ones it uses. Heavy libraries (copier, modal, vllm, torch,
transformers) may be imported only by the parts that need them, and only inside functions, so
that the CLI's start-up path never loads them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "liftdeploy"

PARTS = ("spec", "planner", "render", "twin", "ops", "client", "runtime", "cli")
"""Subpackages; the package's top-level modules (errors, versions, examples, _lazy) are `base`."""

BASE = {"base", "package"}
ALLOWED: dict[str, set[str]] = {
    "base": {"base", "spec"},  # liftdeploy.examples loads specs; the rest import nothing
    "spec": BASE,
    "planner": BASE | {"spec"},
    "render": BASE | {"spec", "planner", "runtime"},  # runtime: the env names its middleware reads
    "client": BASE | {"spec", "planner", "runtime"},  # planner: the cold start a client waits out
    "ops": BASE | {"spec", "planner", "render", "client", "runtime"},  # runtime: the alert post
    "twin": BASE | {"spec", "planner", "render", "client", "runtime"},
    "runtime": set(),  # ships into containers: standard library (and jsonschema) only
    "cli": BASE | set(PARTS),
    "package": BASE | set(PARTS),  # liftdeploy/__init__.py names the public API lazily
}
HEAVY = ("copier", "modal", "vllm", "torch", "transformers", "tokenizers")
HEAVY_ALLOWED = {"cli", "render", "twin", "ops", "client"}  # client: Modal's URL lookup


def part_of(module: str) -> str:
    bits = module.split(".")
    if len(bits) == 1 or bits[1] == "api":  # the package and its Python API face every part
        return "package"
    return bits[1] if bits[1] in PARTS else "base"


def violations(package: Path) -> list[str]:
    """Each forbidden import in the package tree, as `file:line: what`."""
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        source = part_of(module)
        tree = ast.parse(path.read_text(), filename=str(path))
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            where = f"{relative}.py:{node.lineno}"
            for name in names:
                root = name.split(".")[0]
                if root == "liftdeploy":
                    target = part_of(name)
                    if target != source and target not in ALLOWED[source]:
                        found.append(f"{where}: {source} imports {name} ({target})")
                elif root in HEAVY:
                    if source not in HEAVY_ALLOWED:
                        found.append(f"{where}: {source} imports {name}")
                    elif id(node) in top_level:
                        found.append(f"{where}: {name} imported at module level")
    return found


def test_the_package_follows_the_dependency_rule() -> None:
    assert violations(PACKAGE) == []


def module_name(path: Path, package: Path) -> str:
    return ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(
        ".__init__"
    )


def _typing_only(tree: ast.Module) -> set[int]:
    """The ids of import nodes under `if TYPE_CHECKING:` (never run, so never a cycle)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    return skipped


def module_imports(package: Path) -> dict[str, set[str]]:
    """Module -> the liftdeploy modules it imports at run time, at module level or inside a
    function (`from liftdeploy.planner import timeouts` names the submodule)."""
    modules = {module_name(path, package): path for path in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        typing_only = _typing_only(tree)
        edges = graph.setdefault(module, set())
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    if submodule in modules:
                        edges.add(submodule)
                    elif node.module in modules:
                        edges.add(node.module)
        edges.discard(module)
    return graph


def cycles_inside_parts(package: Path) -> list[str]:
    """Each import cycle among the modules of one part, as `a -> b -> a`."""
    graph = module_imports(package)
    same_part = {
        m: {t for t in targets if part_of(t) == part_of(m)} for m, targets in graph.items()
    }
    found: set[tuple[str, ...]] = set()

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(same_part.get(module, ())):
            if target in path:
                loop = path[path.index(target) :]
                start = loop.index(min(loop))  # one rotation per cycle
                found.add(tuple(loop[start:] + loop[:start]))
            elif target > path[0]:  # each cycle is walked from its smallest module only
                visit(target, [*path, target])

    for module in sorted(same_part):
        visit(module, [module])
    return [" -> ".join([*loop, loop[0]]) for loop in sorted(found)]


@pytest.mark.parametrize("part", PARTS)
def test_no_import_cycle_inside_a_part(part: str) -> None:
    prefix = f"liftdeploy.{part}."
    assert [c for c in cycles_inside_parts(PACKAGE) if c.startswith(prefix)] == []


@pytest.mark.parametrize("at_module_level", [True, False])
def test_an_import_cycle_inside_a_part_is_caught(tmp_path: Path, at_module_level: bool) -> None:
    import shutil

    copy = tmp_path / "liftdeploy"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "_template"))
    target = copy / "planner" / "download.py"  # report imports download; this closes the loop
    line = "from liftdeploy.planner import report"
    if not at_module_level:
        line = f"def _late() -> None:\n    {line}"
    target.write_text(target.read_text() + f"\n{line}\n")
    assert any(
        "liftdeploy.planner.download -> liftdeploy.planner.report" in cycle
        for cycle in cycles_inside_parts(copy)
    ), cycles_inside_parts(copy)


def test_every_part_is_a_subpackage_with_a_docstring() -> None:
    for part in PARTS:
        init = PACKAGE / part / "__init__.py"
        assert init.is_file(), part
        assert ast.get_docstring(ast.parse(init.read_text())), (
            f"{part}/__init__.py has no docstring"
        )


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        ("spec/model.py", "from liftdeploy.planner.report import plan", "spec imports"),
        ("runtime/guard.py", "import liftdeploy.errors", "runtime imports"),
        ("planner/report.py", "import modal", "planner imports modal"),
        ("ops/http.py", "import modal", "modal imported at module level"),
        ("client/api.py", "from liftdeploy.twin.local import LocalTwin", "client imports"),
    ],
)
def test_a_forbidden_edge_is_caught(tmp_path: Path, module: str, line: str, expected: str) -> None:
    import shutil

    copy = tmp_path / "liftdeploy"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "_template"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{line}\n")
    found = violations(copy)
    assert len(found) == 1 and expected in found[0], found


def test_public_names_keep_working() -> None:
    import liftdeploy
    import liftdeploy.client
    import liftdeploy.examples

    assert liftdeploy.ModelDeployment.__name__ == "ModelDeployment"
    assert liftdeploy.client.Client is liftdeploy.Client
    assert liftdeploy.examples.QWEN25_CODER_32B.name
    from liftdeploy.planner import plan
    from liftdeploy.spec import load_spec

    assert callable(load_spec) and callable(plan)
