"""init: scaffold a new service with Copier's questions as options (no prompts, for scripts)."""

from __future__ import annotations

import argparse

from liftdeploy.cli import common

# Copier's questions (copier.yml), as options; an option left out takes Copier's default.
QUESTIONS: dict[str, tuple[type, str]] = {
    "preset": (str, "blank (default unless --model-id is an example's model), or an example: "
                    "qwen25-coder-32b, qwen3-next-80b, qwen3-coder-480b"),
    "model_id": (str, "Hugging Face model id (org/name)"),
    "name": (str, "app name (default: from the model's name)"),
    "description": (str, "what the service is for, in a sentence"),
    "model_revision": (str, "commit hash to pin the weights to"),
    "gpu_type": (str, "GPU type (default: the cheapest that holds the model, per the planner)"),
    "gpu_count": (int, "GPUs per container"),
    "min_containers": (int, "containers kept running at all times"),
    "max_containers": (int, "most containers at once (0 = Modal's limit)"),
    "max_concurrent_requests": (int, "requests one container serves at once (default: what "
                                     "its KV cache holds, at most 16)"),
    "dicts": (str, "blank preset: Modal Dict short names, comma-separated (<name>-<short>)"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "init", help="scaffold a new service: Copier's questions as options, no prompts",
        description="Write a new service directory, exactly as `copier copy --trust --defaults "
        "--data ...` does with the same answers. Every name in the blank preset is the new "
        "service's own; a model outside the catalog is sized from its config.json on the Hub.",
    )
    p.add_argument("directory", metavar="DIR", help="new service directory (must not exist)")
    for question, (kind, text) in QUESTIONS.items():
        p.add_argument("--" + question.replace("_", "-"), dest=question, type=kind,
                       metavar=question.split("_")[-1].upper(), help=text)
    p.set_defaults(handler=init)


def init(args: argparse.Namespace) -> int:
    from liftdeploy.render.service import scaffold

    answers = {q: getattr(args, q) for q in QUESTIONS if getattr(args, q) is not None}
    out = scaffold(args.directory, answers)
    common.note(f"wrote {out}; next: `liftdeploy plan {out}`, then "
                f"`liftdeploy deploy {out} --env staging` (see {out}/RUNBOOK.md)")
    return 0
