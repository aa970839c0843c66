"""Whether a push's CI run starts a container: the plan's cold-start cost against
budget.ci_warmup_max_usd (default: single-GPU services only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from liftdeploy.cli.main import main
from liftdeploy.planner.ci import ci_warmup, cold_start_seconds, cold_start_usd
from liftdeploy.planner.report import plan, planned_lifecycle
from liftdeploy.spec.model import ResolvedDeployment
from liftdeploy.spec.specfile import read_yaml, spec_from_data

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def staging(example: str, limit: float | None = None) -> ResolvedDeployment:
    data = read_yaml(EXAMPLES / f"{example}.yaml")
    if limit is not None:
        data.setdefault("budget", {})["ci_warmup_max_usd"] = limit
    return spec_from_data(data).resolve("staging")


def startup(resolved: ResolvedDeployment) -> int:
    return planned_lifecycle(resolved).startup_timeout_s


def test_default_checks_single_gpu_and_skips_multi_gpu() -> None:
    single, multi = staging("qwen25-coder-32b"), staging("qwen3-coder-480b")
    assert single.gpu.count == 1 and ci_warmup(single, startup(single)).warmup
    assert multi.gpu.count > 1 and not ci_warmup(multi, startup(multi)).warmup
    assert "budget.ci_warmup_max_usd" in ci_warmup(multi, startup(multi)).reason


def test_the_limit_decides_against_the_cold_start_cost() -> None:
    big = staging("qwen3-coder-480b")
    cost = cold_start_usd(big, startup(big))
    assert cost > 0
    assert ci_warmup(staging("qwen3-coder-480b", limit=cost + 0.01), startup(big)).warmup
    below = ci_warmup(staging("qwen3-coder-480b", limit=cost - 0.01), startup(big))
    assert not below.warmup and "above budget.ci_warmup_max_usd" in below.reason
    small = staging("qwen25-coder-32b", limit=0)
    assert not ci_warmup(small, startup(small)).warmup


def test_cold_start_grows_with_the_idle_window_and_matches_the_plan() -> None:
    resolved = staging("qwen3-next-80b")
    longer = resolved.model_copy(
        update={
            "runtime": resolved.runtime.model_copy(
                update={"scaledown_window_s": resolved.runtime.scaledown_window_s + 3600}
            )
        }
    )
    per_hour = resolved.container_hour_usd()
    startup_s = startup(resolved)
    assert cold_start_usd(longer, startup_s) - cold_start_usd(resolved, startup_s) == pytest.approx(
        per_hour
    )
    assert cold_start_seconds(resolved, startup_s) > resolved.runtime.scaledown_window_s
    assert plan(resolved).cost.cold_start_usd == pytest.approx(cold_start_usd(resolved, startup_s))


def test_cli_prints_the_output_line(capsys: pytest.CaptureFixture[str]) -> None:
    spec = str(EXAMPLES / "qwen3-coder-480b.yaml")
    assert main(["ci-warmup", spec, "--env", "staging"]) == 0
    out, err = capsys.readouterr()
    assert out == "warmup=false\n"
    assert "multi-GPU" in err
