"""Render a spec into a service directory through the Copier template, and check for drift.

`render` drives Copier's Python API with the same template `copier copy` uses: the checkout's
`copier.yml` + `template/`, or the copy shipped in the wheel (`liftdeploy/_template/`). It
renders into a temporary directory first, then merges into the service (see
`liftdeploy.render.regenerate`), so hand edits survive and a failure leaves nothing half-written.
`check` re-renders to a temporary place and compares what matters (not Copier's stamps).
"""

from __future__ import annotations

import ast
import difflib
import subprocess
import tempfile
import warnings
from pathlib import Path

from liftdeploy.render import regenerate
from liftdeploy.errors import RenderError
from liftdeploy.render.regenerate import ANSWERS_FILE, SPEC_FILE

__all__ = ["render", "check", "template_source", "render_to_dict", "is_service"]

def template_source() -> Path:
    """The template root holding copier.yml: the wheel's copy, else the checkout's root."""
    packaged = Path(__file__).parent.parent / "_template"
    if (packaged / "copier.yml").is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "copier.yml").is_file() and (checkout / "template").is_dir():
        return checkout
    raise RenderError(
        f"liftdeploy's Copier template is missing (looked in {packaged} and {checkout}); "
        f"reinstall liftdeploy (pip install --force-reinstall liftdeploy)"
    )


def render_to_dict(spec_path: str | Path, *, template: str | Path | None = None) -> dict[str, str]:
    """Render a spec file with Copier into a temporary directory; relative path -> text."""
    with tempfile.TemporaryDirectory(prefix="liftdeploy-render-") as tmp:
        out = Path(tmp) / "service"
        _copier_render(Path(spec_path), out, Path(template) if template else template_source())
        return regenerate.rendered_files(out)


def render(
    spec_path: str | Path,
    out_dir: str | Path,
    *,
    template: str | Path | None = None,
    overwrite: bool = False,
    force: bool = False,
    conflict_markers: bool = False,
) -> Path:
    """Render (or regenerate) the service for a spec file into out_dir; returns out_dir.

    Over an existing service, hand edits are kept by a three-way merge against the last render.
    `overwrite` replaces rendered files instead (hand edits dropped); `force` allows a service
    whose rendered files have uncommitted changes; `conflict_markers` writes conflicting files
    with standard markers instead of leaving the service unchanged. Invalid specs raise the
    spec's own SpecError before anything is written.
    """
    from liftdeploy.spec.specfile import load_spec

    spec_path, out = Path(spec_path), Path(out_dir)
    load_spec(spec_path)  # the spec's own message, before Copier runs
    fresh = render_to_dict(spec_path, template=template)
    if out.exists() and not out.is_dir():
        raise RenderError(f"{out} is a file; pass a directory to render the service into")
    existing = out.is_dir() and any(out.iterdir())
    if existing and not force:
        # The spec may carry your uncommitted change: it is the render's input.
        rendered = sorted(set(fresh) - {SPEC_FILE, ANSWERS_FILE} | _pristine_names(out))
        dirty = regenerate.dirty_paths(out, [p for p in rendered if (out / p).exists()])
        if dirty:
            raise RenderError(
                f"{out}: uncommitted changes in {', '.join(dirty)}; regenerating would mix its "
                f"changes with yours. Commit (or stash) them first, or pass --force"
            )
    base = _base(out) if existing and not overwrite else None
    result = regenerate.merge(out, fresh, base=base, overwrite=overwrite or not existing)
    if result.conflicts and not conflict_markers:
        raise RenderError(
            f"{out}: your edits and the new render change the same lines; nothing was written.\n"
            f"{result.report()}\nResolve by editing the file(s) to include the new values, or "
            f"rerun with --conflict-markers (then fix the marked hunks), or --overwrite to drop "
            f"your edits"
        )
    out.mkdir(parents=True, exist_ok=True)
    regenerate.write(out, result, fresh)
    if result.conflicts:
        raise RenderError(
            f"{out}: wrote conflict markers; resolve these hunks, then run `liftdeploy check`:\n"
            f"{result.report()}"
        )
    return out


def check(path: str | Path) -> list[str]:
    """Drift descriptions for a service dir or a directory of services (empty when in sync).

    A service is in sync when regenerating it would change nothing: with a last render kept in
    the service that means a three-way merge of a fresh render leaves every file as it is (hand
    edits allowed); without one, the files equal a fresh render. A spec file beside the
    services (`<dir>/<service>.yaml`, as in examples/) must equal that service's deployment.yaml.
    """
    root = Path(path)
    if (root / SPEC_FILE).is_file():
        services = [root]
    elif root.is_dir():
        services = sorted(p.parent for p in root.rglob(SPEC_FILE) if is_service(p.parent))
    else:
        raise RenderError(f"{root}: not a directory; pass a rendered service or a folder of them")
    if not services:
        raise RenderError(f"{root}: no rendered service found (a folder with {SPEC_FILE} and "
                          f"{ANSWERS_FILE}); render one with `liftdeploy render SPEC -o DIR`")
    drift = []
    for service in services:
        drift += _service_drift(service)
        source = root / f"{service.name}.yaml"
        if source.is_file() and source.read_text() != (service / SPEC_FILE).read_text():
            drift.append(f"{service / SPEC_FILE}: differs from {source}; run "
                         f"`liftdeploy render {source} -o {service}`")
    return drift


def _service_drift(service: Path) -> list[str]:
    fresh = render_to_dict(service / SPEC_FILE)
    result = regenerate.merge(service, fresh, base=_base(service))
    command = f"`liftdeploy render {service}`"
    drift = [f"{service / c.path}: hand edits conflict with the spec; run {command}"
             for c in result.conflicts]
    for rel, text in result.files.items():
        current = service / rel
        now = current.read_text(encoding="utf-8") if current.is_file() else None
        if rel == ANSWERS_FILE and now is not None and text is not None:
            now, text = regenerate.without_stamps(now), regenerate.without_stamps(text)
        if now == text:
            if now is not None and rel.endswith(".py") and "/" not in rel and rel in fresh:
                drift += _spec_value_drift(current, now, fresh[rel], command)
            continue
        if text is None:
            drift.append(f"{current}: no longer rendered from the spec; run {command}")
        elif now is None:
            drift.append(f"{current}: missing; run {command}")
        else:
            drift.append(f"{current}: differs from a fresh render; run {command}\n"
                         + _short_diff(now, text))
    return drift


def _spec_value_drift(current: Path, now: str, fresh: str, command: str) -> list[str]:
    """Hand edits may add code to a rendered module, never contradict the spec: its top-level
    constants and decorator arguments (where the spec's values live) must equal a fresh render.
    Compared as parsed code, so reformatting is not drift."""
    try:
        values_now = _spec_values(now)
    except SyntaxError as exc:
        return [f"{current}: not valid Python ({exc.msg}, line {exc.lineno}); fix it or run "
                f"{command} --overwrite"]
    drift = []
    for name, expected in _spec_values(fresh).items():
        found = values_now.get(name)
        if found != expected:
            drift.append(
                f"{current}: {name} is {_clip(found) if found else 'missing'} but "
                f"deployment.yaml gives {_clip(expected)}; change the spec, not the generated "
                f"value, then run {command}"
            )
    return drift


def _spec_values(source: str) -> dict[str, str]:
    """Top-level UPPER_CASE constants, the `app = modal.App(...)` line (its tags split the bill)
    and each definition's decorators, as normalised code."""
    values = {}
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper()):
            values[node.targets[0].id] = ast.unparse(node.value)
        elif (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "app"):
            values["the app"] = ast.unparse(node.value)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.decorator_list:
                values[f"the decorator of {node.name}"] = "; ".join(
                    ast.unparse(d) for d in node.decorator_list)
    return values


def _clip(code: str, limit: int = 70) -> str:
    flat = " ".join(code.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _base(service: Path) -> dict[str, str] | None:
    """What the service's files were rendered as: the last render it keeps, else (a service
    made by `copier copy`) Copier's render of the recorded answers at the recorded commit."""
    kept = regenerate.last_render(service)
    if kept is not None or not (service / ANSWERS_FILE).is_file():
        return kept
    from liftdeploy.spec.specfile import parse_yaml

    answers = parse_yaml((service / ANSWERS_FILE).read_text(), source=str(service / ANSWERS_FILE))
    if not isinstance(answers, dict) or "_src_path" not in answers:
        return None
    data = {k: v for k, v in answers.items() if not str(k).startswith("_")}
    with tempfile.TemporaryDirectory(prefix="liftdeploy-base-") as tmp:
        try:
            _run_copier(str(answers["_src_path"]), Path(tmp) / "service", data,
                        vcs_ref=answers.get("_commit"))
        except Exception:  # noqa: BLE001 - the source may be gone; merge then reports conflicts
            return None
        return regenerate.rendered_files(Path(tmp) / "service")


def is_service(path: Path) -> bool:
    """Whether a directory holds a rendered service (Copier's answers or a last render)."""
    return (path / ANSWERS_FILE).is_file() or (path / regenerate.PRISTINE_DIR).is_dir()


def _pristine_names(service: Path) -> set[str]:
    pristine = service / regenerate.PRISTINE_DIR
    return set(regenerate.rendered_files(pristine)) if pristine.is_dir() else set()


def _short_diff(now: str, expected: str, limit: int = 12) -> str:
    lines = list(difflib.unified_diff(now.splitlines(), expected.splitlines(),
                                      "on disk", "fresh render", n=0, lineterm=""))
    shown = [f"    {line}" for line in lines[2:limit + 2]]
    if len(lines) > limit + 2:
        shown.append(f"    ... {len(lines) - limit - 2} more diff lines")
    return "\n".join(shown)


def _copier_render(spec_path: Path, out: Path, template: Path) -> None:
    """Run Copier's copy with the spec text and the answers `copier copy` would record."""
    from copier.errors import CopierError

    from liftdeploy.render.copier_ext import answers_for_spec

    text = spec_path.read_text(encoding="utf-8")
    # A git checkout renders its latest tag unless told HEAD (which includes uncommitted work).
    vcs_ref = "HEAD" if _is_git_root(template) else None
    try:
        data = {"spec_yaml": text, **answers_for_spec(text, str(spec_path), template)}
        _run_copier(str(template), out, data, vcs_ref=vcs_ref)
    except CopierError as exc:
        raise RenderError(f"{spec_path}: {exc}") from None


def _run_copier(source: str, out: Path, data: dict[str, object], *, vcs_ref: str | None) -> None:
    import copier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Copier's "dirty template" notice is expected here
        copier.run_copy(source, str(out), data=data, defaults=True, overwrite=True,
                        unsafe=True, quiet=True, vcs_ref=vcs_ref)


def _is_git_root(path: Path) -> bool:
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path,
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return False
    return Path(top).resolve() == path.resolve()
