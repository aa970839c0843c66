"""The local twin beside the bare vLLM server: start-up time and batched throughput.

Two servers, run one after the other on the same tiny model with the same arguments (the twin's
argv from `liftdeploy.render.vllm_args.server_args` after `liftdeploy.twin.local.cpu_twin`):
- twin: `liftdeploy serve SPEC --local` (the CLI, ServerProcess, JSON logs, the works);
- bare: `python -m vllm.entrypoints.openai.api_server ARGS`, nothing around it.

Figures, per server: time from process start to the first 200 on /health (the bench polls both
the same way), and output tokens per second for 16 JSON-schema-constrained requests sent one at
a time beside 16 sent at once (same prompts, fixed seeds; each measured REPEATS times, median),
with vLLM's own step count showing the batching. Targets: twin/bare time to ready <= 1.1; the
twin's concurrent/sequential throughput ratio at least 0.9 of the bare server's. Rounds alternate
twin and bare; medians count. On a machine shared with other work the figures are noisy: the
load average is printed beside them.

    .venv/bin/python bench/twin.py [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import openai

from liftdeploy.render.vllm_args import SERVER_MODULE, server_args
from liftdeploy.spec.specfile import load_spec
from liftdeploy.twin.local import TWIN_HOST, cpu_twin, free_port, require_supported, twin_env
from liftdeploy.twin.tinymodel import build_tiny_model

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "qwen25-coder-32b.yaml"
TARGET_READY_RATIO = 1.1
TARGET_BATCH_SHARE = 0.9
REQUESTS = 16
REPEATS = 3
READY_TIMEOUT_S = 600
SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "op": {"enum": ["add", "sub", "mul", "div"]},
            "arg": {"type": "integer", "minimum": 0, "maximum": 999},
            "note": {"type": "string", "pattern": "^[a-z]{1,12}$"},
        },
        "required": ["op", "arg", "note"],
        "additionalProperties": False,
    },
    "minItems": 3,
    "maxItems": 6,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="start each server N times")
    rounds = parser.parse_args().rounds
    require_supported()
    print(
        f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
        f"(other work on the machine shows up as noise)",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="liftdeploy-bench-") as tmp:
        model = build_tiny_model(Path(tmp) / "tiny")
        results: dict[str, list[dict[str, float]]] = {"twin": [], "bare": []}
        for round_no in range(1, rounds + 1):
            for kind in ("twin", "bare"):
                port = free_port()
                process, command = _start(kind, model, port, Path(tmp) / f"{kind}.log")
                ready_s = _wait_ready(process, port)
                figures = {"ready_s": ready_s, **_throughput(port)}
                _stop(process)
                results[kind].append(figures)
                print(
                    f"round {round_no} {kind}: ready {ready_s:5.1f} s, "
                    f"sequential {figures['seq_tok_s']:6.1f} tok/s, "
                    f"concurrent {figures['conc_tok_s']:6.1f} tok/s; {figures['tokens']:.0f} "
                    f"tokens took {figures['seq_steps']:.0f} engine steps sequential, "
                    f"{figures['conc_steps']:.0f} concurrent",
                    flush=True,
                )
        print(f"\ncommand (bare): {' '.join(command[:4])} … ({len(command) - 3} args)")
        _report(results)
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


def _start(
    kind: str, model: Path, port: int, log: Path
) -> tuple[subprocess.Popen[bytes], list[str]]:
    twin = cpu_twin(load_spec(SPEC).resolve(), model)
    args = server_args(twin, port=port, host=TWIN_HOST)
    bare = [sys.executable, "-m", SERVER_MODULE, *args]
    if kind == "twin":
        command = [
            sys.executable,
            "-m",
            "liftdeploy.cli.main",
            "serve",
            str(SPEC),
            "--local",
            "--quiet",
            "--model",
            str(model),
            "--port",
            str(port),
        ]
    else:
        command = bare
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - fixed argv
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **twin_env(twin)},
        )
    return process, bare


def _wait_ready(process: subprocess.Popen[bytes], port: int) -> float:
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT_S:
        if process.poll() is not None:
            raise SystemExit(f"server exited with status {process.returncode} before ready")
        try:
            if httpx.get(f"http://{TWIN_HOST}:{port}/health", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    _stop(process)
    raise SystemExit(f"server not ready after {READY_TIMEOUT_S} s")


def _throughput(port: int) -> dict[str, float]:
    base = f"http://{TWIN_HOST}:{port}"
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0)
    model = client.models.list().data[0].id

    def request(i: int) -> dict[str, Any]:
        return {
            "model": model,
            "seed": i,
            "max_tokens": 256,
            "messages": [{"role": "user", "content": f"List operations, batch {i}."}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "ops", "schema": SCHEMA, "strict": True},
            },
        }

    def tokens_of(response: Any) -> int:
        assert response.choices[0].finish_reason == "stop", response
        return int(response.usage.completion_tokens)

    def ask(i: int) -> int:
        return tokens_of(client.chat.completions.create(**request(i)))

    def sequential() -> tuple[int, float]:
        started = time.monotonic()
        return sum(ask(i) for i in range(REQUESTS)), time.monotonic() - started

    async def all_at_once() -> int:
        # One event loop sends all 16 at once; threads would trickle in on a busy machine.
        async with openai.AsyncOpenAI(
            base_url=f"{base}/v1", api_key="none", max_retries=0
        ) as aclient:
            responses = await asyncio.gather(
                *(aclient.chat.completions.create(**request(i)) for i in range(REQUESTS))
            )
        return sum(tokens_of(r) for r in responses)

    def concurrent() -> tuple[int, float]:
        started = time.monotonic()
        return asyncio.run(all_at_once()), time.monotonic() - started

    ask(-1)  # warm-up: compiles the grammar once, outside the measurement
    seq, conc, seq_steps, conc_steps = [], [], [], []
    for _ in range(REPEATS):
        for run, rates, steps in ((sequential, seq, seq_steps), (concurrent, conc, conc_steps)):
            before = _engine_steps(base)
            tokens, seconds = run()
            rates.append(tokens / seconds)
            time.sleep(0.5)  # let the metrics catch up with the last step
            steps.append(_engine_steps(base) - before)
    return {
        "seq_tok_s": statistics.median(seq),
        "conc_tok_s": statistics.median(conc),
        "tokens": tokens,
        "seq_steps": statistics.median(seq_steps),
        "conc_steps": statistics.median(conc_steps),
    }


def _engine_steps(base: str) -> float:
    """vLLM's count of engine steps so far (each makes at most one token per request)."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(
        float(m.group(1))
        for m in re.finditer(
            r"^vllm:iteration_tokens_total_count(?:\{[^}]*\})?\s+(\S+)$", text, re.M
        )
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C for the twin's CLI (it stops its server), SIGTERM for the bare server."""
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _report(results: dict[str, list[dict[str, float]]]) -> None:
    median = {
        kind: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        for kind, rows in results.items()
    }
    twin, bare = median["twin"], median["bare"]
    ready_ratio = twin["ready_s"] / bare["ready_s"]
    twin_batch = twin["conc_tok_s"] / twin["seq_tok_s"]
    bare_batch = bare["conc_tok_s"] / bare["seq_tok_s"]
    print(
        f"time to ready (median): twin {twin['ready_s']:.1f} s, bare {bare['ready_s']:.1f} s, "
        f"ratio {ready_ratio:.2f} (target <= {TARGET_READY_RATIO})"
        f" {'OK' if ready_ratio <= TARGET_READY_RATIO else 'MISSED'}"
    )
    print(
        f"16 concurrent / 16 sequential output tokens/s: twin {twin_batch:.2f}x, bare "
        f"{bare_batch:.2f}x; twin keeps {twin_batch / bare_batch:.2f} of the bare ratio "
        f"(target >= {TARGET_BATCH_SHARE})"
        f" {'OK' if twin_batch / bare_batch >= TARGET_BATCH_SHARE else 'MISSED'}"
    )


if __name__ == "__main__":
    sys.exit(main())
