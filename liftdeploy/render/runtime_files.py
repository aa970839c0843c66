"""The liftdeploy.runtime files a rendered service ships: which modules, and their source.

The image carries them as liftdeploy_runtime/, copied verbatim from the installed package.
"""

from __future__ import annotations

from pathlib import Path

from liftdeploy.render.stop import stop_render

RUNTIME_PACKAGE = "liftdeploy.runtime"
"""The stdlib-only package whose files travel into the Modal image (liftdeploy_runtime/)."""
HOOK_MODULES = ("server", "weights")
"""liftdeploy.runtime modules the app itself imports (the others are named by the argv)."""


def runtime_source(filename: str) -> str:
    """The text of one liftdeploy.runtime file, copied verbatim into the service."""
    path = runtime_dir() / filename
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        stop_render(f"liftdeploy.runtime has no {filename}; reinstall liftdeploy")


def with_runtime_imports(modules: set[str]) -> set[str]:
    """`modules` and every liftdeploy.runtime module they import, read from their source, so a
    module the guard starts importing (say) is shipped without anyone listing it."""
    import ast

    needed, todo = set(), list(modules)
    while todo:
        module = todo.pop()
        if module in needed:
            continue
        needed.add(module)
        tree = ast.parse((runtime_dir() / f"{module}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            todo += [
                name[len(RUNTIME_PACKAGE) + 1 :].split(".")[0]
                for name in names
                if name.startswith(RUNTIME_PACKAGE + ".")
            ]
    return needed


def runtime_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(RUNTIME_PACKAGE)
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent
