"""Render a spec into a service directory through the Copier template, and check for drift.

`render` drives Copier's Python API with the same template `copier copy` uses: the checkout's
`copier.yml` + `template/`, or the copy shipped in the wheel (`liftdeploy/_template/`). It
renders into a temporary directory first, then merges into the service (see
`liftdeploy.render.regenerate`), so hand edits survive and a failure leaves nothing half-written:
a new service is built beside its target and moved in whole (`liftdeploy.files`).
`check` re-renders to a temporary place and compares what matters (not Copier's stamps).
"""

from __future__ import annotations

import ast
import difflib
import tempfile
import warnings
from pathlib import Path

from liftdeploy import __version__
from liftdeploy.errors import FileWriteError, RenderError
from liftdeploy.files import new_directory
from liftdeploy.render import regenerate, template_version
from liftdeploy.render.regenerate import ANSWERS_FILE
from liftdeploy.render.template_version import Template, template_source
from liftdeploy.spec.specfile import SPEC_FILE

__all__ = [
    "render",
    "check",
    "unpinned_production",
    "template_source",
    "render_to_dict",
    "is_service",
    "scaffold",
]


def render_to_dict(
    spec_path: str | Path, *, template: str | Path | Template | None = None
) -> dict[str, str]:
    """Render a spec file with Copier into a temporary directory; relative path -> text.
    `template`: a template root (default: the installed one) or a Template at a version."""
    with tempfile.TemporaryDirectory(prefix="liftdeploy-render-") as tmp:
        out = Path(tmp) / "service"
        _copier_render(Path(spec_path), out, _template(template))
        return regenerate.rendered_files(out)


def _template(template: str | Path | Template | None) -> Template:
    if isinstance(template, Template):
        return template
    if template is None:
        return template_version.installed()
    return template_version.at_root(Path(template))


def render(
    spec_path: str | Path,
    out_dir: str | Path,
    *,
    template: str | Path | None = None,
    overwrite: bool = False,
    force: bool = False,
    conflict_markers: bool = False,
    notes: list[str] | None = None,
) -> Path:
    """Render (or regenerate) the service for a spec file into out_dir; returns out_dir.

    Over an existing service, hand edits are kept by a three-way merge against the last render.
    `overwrite` replaces rendered files instead (hand edits dropped); `force` allows a service
    whose rendered files have uncommitted changes; `conflict_markers` writes conflicting files
    with standard markers instead of leaving the service unchanged. Invalid specs raise the
    spec's own SpecError before anything is written. An existing service is rendered with the
    template version it records (`template_version.for_service`); what to tell the user about
    that choice is appended to `notes`.
    """
    from liftdeploy.spec.specfile import load_spec

    spec_path, out = Path(spec_path), Path(out_dir)
    load_spec(spec_path)  # the spec's own message, before Copier runs
    if out.exists() and not out.is_dir():
        raise RenderError(f"{out} is a file; pass a directory to render the service into")
    existing = out.is_dir() and any(out.iterdir())
    chosen = _template(template) if template or not existing else template_version.for_service(out)
    if chosen.note and notes is not None:
        notes.append(chosen.note)
    fresh = render_to_dict(spec_path, template=chosen)
    fresh[ANSWERS_FILE] = template_version.portable_answers(fresh[ANSWERS_FILE], out)
    if existing:
        try:
            regenerate.refuse_links(out, fresh)
        except FileWriteError as exc:
            raise RenderError(str(exc)) from None
    if existing and not force:
        # The spec may carry your uncommitted change: it is the render's input.
        rendered = sorted(set(fresh) - {SPEC_FILE, ANSWERS_FILE} | _pristine_names(out))
        dirty = regenerate.dirty_paths(out, [p for p in rendered if (out / p).exists()])
        if dirty:
            raise RenderError(
                f"{out}: uncommitted changes in {', '.join(dirty)}; regenerating would mix its "
                f"changes with yours. Commit (or stash) them first, or pass --force"
            )
    base = _base(out, chosen) if existing and not overwrite else None
    result = regenerate.merge(out, fresh, base=base, overwrite=overwrite or not existing)
    if result.conflicts and not conflict_markers:
        raise RenderError(
            f"{out}: your edits and the new render change the same lines; nothing was written.\n"
            f"{result.report()}\nResolve by editing the file(s) to include the new values, or "
            f"rerun with --conflict-markers (then fix the marked hunks), or --overwrite to drop "
            f"your edits"
        )
    try:
        if existing:
            regenerate.write(out, result, fresh)
        else:  # built whole beside out and moved in: a failure leaves no half service
            with new_directory(out) as building:
                regenerate.write(building, result, fresh)
    except FileWriteError as exc:
        raise RenderError(str(exc)) from None
    except OSError as exc:
        raise RenderError(
            f"{out}: cannot write the service there ({exc.strerror or exc}); "
            f"pass a directory you can create and write to"
        ) from None
    if result.conflicts:
        raise RenderError(
            f"{out}: wrote conflict markers; resolve these hunks, then run `liftdeploy check`:\n"
            f"{result.report()}"
        )
    return out


def check(path: str | Path, *, notes: list[str] | None = None) -> list[str]:
    """Drift descriptions for a service dir or a directory of services (empty when in sync).

    A service is in sync when regenerating it would change nothing: with a last render kept in
    the service that means a three-way merge of a fresh render leaves every file as it is (hand
    edits allowed); without one, the files equal a fresh render. A spec file beside the
    services (`<dir>/<service>.yaml`, as in examples/) must equal that service's deployment.yaml.
    Each service is rendered with the template version it records; notes about that choice (a
    version other than the installed one) are appended to `notes`, never reported as drift.
    """
    root = Path(path)
    drift = []
    for service in _services(root):
        drift += _service_drift(service, notes)
        source = root / f"{service.name}.yaml"
        if source.is_file() and source.read_text() != (service / SPEC_FILE).read_text():
            drift.append(
                f"{service / SPEC_FILE}: differs from {source}; run "
                f"`liftdeploy render {source} -o {service}`"
            )
    return drift


def unpinned_production(path: str | Path, *, environment: str | None = None) -> list[str]:
    """For a service dir or a directory of services: each whose production serves unpinned
    weights; with `environment`, only those whose production environment it is (what `check
    --env` fails on: a deploy of any other environment takes unpinned weights)."""
    from liftdeploy.spec.model import pinning_problem
    from liftdeploy.spec.specfile import load_spec

    problems = []
    for service in _services(Path(path)):
        spec = load_spec(service / SPEC_FILE)
        if environment is not None and environment != spec.production_environment:
            continue
        problem = pinning_problem(
            spec.resolve(spec.production_environment), str(service / SPEC_FILE)
        )
        if problem:
            problems.append(f"{service / SPEC_FILE}: {problem}")
    return problems


def _services(root: Path) -> list[Path]:
    if (root / SPEC_FILE).is_file():
        services = [root]
    elif root.is_dir():
        services = sorted(p.parent for p in root.rglob(SPEC_FILE) if is_service(p.parent))
    else:
        raise RenderError(f"{root}: not a directory; pass a rendered service or a folder of them")
    if not services:
        raise RenderError(
            f"{root}: no rendered service found (a folder with {SPEC_FILE} and "
            f"{ANSWERS_FILE}); render one with `liftdeploy render SPEC -o DIR`"
        )
    return services


def _service_drift(service: Path, notes: list[str] | None) -> list[str]:
    chosen = template_version.for_service(service)
    if chosen.note and notes is not None:
        notes.append(chosen.note)
    fresh = render_to_dict(service / SPEC_FILE, template=chosen)
    base = _base(service, chosen)
    result = regenerate.merge(service, fresh, base=base)
    command = f"`liftdeploy render {service}`"
    record = template_version.recorded(service)
    if base is None and record and result.conflicts:
        # A copier-made service whose recorded template cannot be rendered here: its files
        # differ from the installed template's render, and nothing says whether by your edits.
        where = record[0] + (f" at {record[1]}" if record[1] else "")
        return [
            f"{service / c.path}: differs from a render of the installed template, and the "
            f"template it was rendered from ({where}) cannot be read to "
            f"tell your edits from template changes; make it readable, or run {command} to "
            f"move to the installed template"
            for c in result.conflicts
        ]
    drift = [
        f"{service / c.path}: hand edits conflict with the spec; run {command}"
        for c in result.conflicts
    ]
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
            drift.append(
                f"{current}: differs from a fresh render; run {command}\n" + _short_diff(now, text)
            )
    return drift


def _spec_value_drift(current: Path, now: str, fresh: str, command: str) -> list[str]:
    """Hand edits may add code to a rendered module, never contradict the spec: its top-level
    constants and decorator arguments (where the spec's values live) must equal a fresh render.
    Compared as parsed code, so reformatting is not drift."""
    try:
        values_now = _spec_values(now)
    except SyntaxError as exc:
        return [
            f"{current}: not valid Python ({exc.msg}, line {exc.lineno}); fix it or run "
            f"{command} --overwrite"
        ]
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
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id.isupper()
        ):
            values[node.targets[0].id] = ast.unparse(node.value)
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "app"
        ):
            values["the app"] = ast.unparse(node.value)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.decorator_list:
                values[f"the decorator of {node.name}"] = "; ".join(
                    ast.unparse(d) for d in node.decorator_list
                )
    return values


def _clip(code: str, limit: int = 70) -> str:
    flat = " ".join(code.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _base(service: Path, chosen: Template) -> dict[str, str] | None:
    """What the service's files were rendered as: the last render it keeps, else (a service
    made by `copier copy`) Copier's render of the recorded answers with the recorded template:
    `chosen` for a release (the installed template when it is that release), else the recorded
    commit."""
    kept = regenerate.last_render(service)
    record = template_version.recorded(service)
    if kept is not None or record is None:
        return kept
    from liftdeploy.spec.specfile import read_yaml

    answers = read_yaml(service / ANSWERS_FILE)
    if not isinstance(answers, dict):
        return None
    data = {k: v for k, v in answers.items() if not str(k).startswith("_")}
    template = chosen if template_version.is_release(record[1]) else Template(*record)
    with tempfile.TemporaryDirectory(prefix="liftdeploy-base-") as tmp:
        try:
            _run_copier(template.source, Path(tmp) / "service", data, vcs_ref=template.vcs_ref)
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
    lines = list(
        difflib.unified_diff(
            now.splitlines(), expected.splitlines(), "on disk", "fresh render", n=0, lineterm=""
        )
    )
    shown = [f"    {line}" for line in lines[2 : limit + 2]]
    if len(lines) > limit + 2:
        shown.append(f"    ... {len(lines) - limit - 2} more diff lines")
    return "\n".join(shown)


def scaffold(out_dir: str | Path, answers: dict[str, object]) -> Path:
    """A new service from Copier's questions answered in `answers` (the rest take their
    defaults): what `copier copy --trust --defaults --data ...` writes, without prompts."""
    from copier.errors import CopierError

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RenderError(
            f"{out} already exists and is not empty; choose a new directory "
            f"(or regenerate that service with `liftdeploy render {out}`)"
        )
    template = template_version.installed()
    try:
        with new_directory(out) as building:  # a failure leaves no half-made service
            _run_copier(template.source, building, dict(answers), vcs_ref=template.vcs_ref)
    except CopierError as exc:
        raise RenderError(str(exc)) from None
    except FileWriteError as exc:
        raise RenderError(str(exc)) from None
    return out


def _copier_render(spec_path: Path, out: Path, template: Template) -> None:
    """Run Copier's copy with the spec text and the answers `copier copy` would record."""
    from copier.errors import CopierError

    from liftdeploy.render.answers import answers_for_spec
    from liftdeploy.spec.specfile import read_text

    text = read_text(spec_path)
    with tempfile.TemporaryDirectory(prefix="liftdeploy-template-") as tmp:
        root = Path(template.source)
        if template.vcs_ref not in (None, "HEAD"):  # a release: its presets decide the answers
            root = template_version.checkout(template, Path(tmp) / "template")
        try:
            data = {"spec_yaml": text, **answers_for_spec(text, str(spec_path), root)}
            _run_copier(template.source, out, data, vcs_ref=template.vcs_ref)
        except CopierError as exc:
            raise RenderError(f"{spec_path}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - another release's template, this extension
            if template.fix is None:
                raise
            raise RenderError(
                f"{spec_path}: liftdeploy {__version__} cannot render template "
                f"{template.vcs_ref} ({type(exc).__name__}: {exc}); {template.fix}"
            ) from None


def _run_copier(source: str, out: Path, data: dict[str, object], *, vcs_ref: str | None) -> None:
    import copier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Copier's "dirty template" notice is expected here
        copier.run_copy(
            source,
            str(out),
            data=data,
            defaults=True,
            overwrite=True,
            unsafe=True,
            quiet=True,
            vcs_ref=vcs_ref,
        )
