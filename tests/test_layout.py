"""The package layout is the architecture: which part may import which, checked over the source.

Every `import liftdeploy...` in the package (at module level or inside a function) is an edge
between parts; an edge not in ALLOWED fails. Heavy libraries (copier, modal, vllm, torch,
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
    if len(bits) == 1:
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


def test_every_part_is_a_subpackage_with_a_docstring() -> None:
    for part in PARTS:
        init = PACKAGE / part / "__init__.py"
        assert init.is_file(), part
        assert ast.get_docstring(ast.parse(init.read_text())), f"{part}/__init__.py has no docstring"


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
    from liftdeploy.spec import load_spec
    from liftdeploy.planner import plan

    assert callable(load_spec) and callable(plan)
