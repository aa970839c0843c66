"""init: scaffold a new service with Copier's questions as options (no prompts, for scripts)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from liftdeploy.cli import common

# Copier's questions (copier.yml), as options; an option left out takes Copier's default.
QUESTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "preset": (
        str,
        "blank (the default, every name the new service's own), or an example, "
        "which shares that example's resources: qwen25-coder-32b, qwen3-next-80b, "
        "qwen3-coder-480b",
    ),
    "model_id": (str, "Hugging Face model id (org/name)"),
    "name": (str, "app name (default: from DIR's name)"),
    "description": (str, "what the service is for, in a sentence"),
    "model_revision": (str, "commit hash to pin the weights to"),
    "requests_per_minute": (
        lambda v: common.positive_number(v, "requests a minute"),
        "busiest demand, written to workload.requests_per_minute: the GPU "
        "default is then the cheapest per million output tokens at it "
        "(without it, the cheapest per hour)",
    ),
    "gpu_type": (str, "GPU type (default: the cheapest that holds the model, per the planner)"),
    "gpu_count": (int, "GPUs per container"),
    "min_containers": (int, "containers kept running at all times"),
    "max_containers": (int, "most containers at once (0 = Modal's limit)"),
    "max_concurrent_requests": (
        int,
        "requests one container serves at once (default: what its KV cache holds, at most 16)",
    ),
    "dicts": (str, "blank preset: Modal Dict short names, comma-separated (<name>-<short>)"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "init",
        help="scaffold a new service: Copier's questions as options, no prompts",
        description="Write a new service directory, exactly as `copier copy --trust --defaults "
        "--data ...` does with the same answers. Every name in the blank preset is the new "
        "service's own; a model outside the catalog is sized from its config.json on the Hub.",
    )
    p.add_argument("directory", metavar="DIR", help="new service directory (must not exist)")
    for question, (kind, text) in QUESTIONS.items():
        p.add_argument(
            "--" + question.replace("_", "-"),
            dest=question,
            type=kind,
            metavar="N" if question == "requests_per_minute" else question.split("_")[-1].upper(),
            help=text,
        )
    p.set_defaults(handler=init)


def init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from liftdeploy.cli.render_commands import ci_notes
    from liftdeploy.render.answers import BLANK_PRESET
    from liftdeploy.render.presets import service_name
    from liftdeploy.render.service import scaffold

    answers = {q: getattr(args, q) for q in QUESTIONS if getattr(args, q) is not None}
    # Never an example's preset unasked: it would borrow that service's Volumes, Dicts, Secrets.
    answers.setdefault("preset", BLANK_PRESET)
    # The service is named after its directory (`init my-coder`), not after the model.
    answers.setdefault("name", service_name(Path(args.directory).resolve().name))
    _check_answers(answers)
    out = scaffold(args.directory, answers)
    if answers["preset"] != BLANK_PRESET:
        for text in _shared_with_example(out, answers["preset"]):
            common.note(f"warning: {text}")
    if answers["preset"] == BLANK_PRESET and "gpu_type" not in answers:
        common.note(f"GPU: {_gpu_choice(out)}")
    common.note(f"wrote {out}; next (RUNBOOK.md): " + "; ".join(first_path(out)))
    for text in ci_notes(out):  # as `render` says them
        common.note(f"note: {text}")
    return 0


def _gpu_choice(out: object) -> str:
    """Which GPU the blank preset chose and how it ranked the ones that fit."""
    from pathlib import Path

    from liftdeploy.planner.checks import ranking_note
    from liftdeploy.spec.specfile import SPEC_FILE, load_spec

    resolved = load_spec(Path(str(out)) / SPEC_FILE).resolve()
    return (
        f"{resolved.gpu.type} x{resolved.gpu.count}, the first of the GPUs that hold the "
        f"model and that vLLM starts on, {ranking_note(resolved)}"
    )


def first_path(out: object) -> list[str]:
    """A new service's first steps, in order: what exists, the weights, staging, then production."""
    return [
        f"`liftdeploy plan {out}`",
        f"`liftdeploy bootstrap {out} --env staging`",
        f"`liftdeploy download {out} --env staging`",
        f"`liftdeploy deploy {out} --env staging`",
        f"`liftdeploy smoke {out} --env staging`",
        f"then `liftdeploy pin {out}` and the same for production",
    ]


def _shared_with_example(out: object, preset: str) -> list[str]:
    """Every Modal object and CORS origin the new service shares with the example it copied."""
    from pathlib import Path

    from liftdeploy.render.answers import preset_path
    from liftdeploy.render.service import template_source
    from liftdeploy.spec.specfile import SPEC_FILE, load_spec

    mine = load_spec(Path(str(out)) / SPEC_FILE)
    example = load_spec(preset_path(Path(template_source()), preset))
    shared: list[str] = []
    for env in mine.environments:
        if env not in example.environments:
            continue
        new, old = mine.resolve(env), example.resolve(env)
        used = set(old.named_resources)
        shared += [
            f"{env}: {kind} {name}"
            for kind, name in new.named_resources
            if (kind, name) in used and f"{env}: {kind} {name}" not in shared
        ]
        shared += [
            f"{env}: CORS origin {origin}"
            for origin in new.cors.allowed_origins
            if origin in old.cors.allowed_origins
        ]
    if not shared:
        return []
    return [
        f"the {preset} preset shares with that example: {', '.join(shared)}; give the new "
        f"service its own with `liftdeploy set` (e.g. storage.dicts=[...]), or use the "
        f"blank preset"
    ]


def _check_answers(answers: dict[str, object]) -> None:
    """Refuse what Copier would answer with a traceback (its question checks raise ValueError):
    a preset that is not one, and text that cannot be written to a file (argv bytes that are
    not UTF-8 arrive as lone surrogates)."""
    from liftdeploy.errors import LiftdeployError
    from liftdeploy.render.answers import BLANK_PRESET, presets
    from liftdeploy.render.service import template_source

    for question, value in answers.items():
        option = "--" + question.replace("_", "-")
        if isinstance(value, str) and not _encodable(value):
            raise LiftdeployError(
                f"{option}: the value is not valid UTF-8 text; type it again in plain text"
            )
    preset = answers.get("preset")
    if preset is None:
        return
    choices = [BLANK_PRESET, *presets(template_source())]
    if preset not in choices:
        raise LiftdeployError(
            f"--preset {preset!r} is not a preset; choose one of {', '.join(choices)} "
            f"(for a spec of your own, use `liftdeploy render SPEC -o DIR`)"
        )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
