"""Each derived value is settled once: a render plans each environment exactly once, and what
the render passes down (the argv, the timeouts) needs no further plan."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from liftdeploy.spec.specfile import load_spec

REPO_ROOT = Path(__file__).resolve().parent.parent
SPEC_32B = REPO_ROOT / "examples" / "qwen25-coder-32b.yaml"


@contextmanager
def counting_plans() -> Iterator[Counter[str]]:
    """Count runs of the planner's real `plan` by environment, however it was imported: a
    profiler sees every call of its code object."""
    from liftdeploy.planner import report

    code = report.plan.__code__
    counts: Counter[str] = Counter()

    def profile(frame, event, arg):  # type: ignore[no-untyped-def]
        if event == "call" and frame.f_code is code:
            counts[frame.f_locals["resolved"].environment] += 1

    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        yield counts
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]


def test_rendering_plans_each_environment_once() -> None:
    from liftdeploy.render import copier_ext
    from liftdeploy.render.service import render_to_dict

    copier_ext._service.cache_clear()  # a render earlier in the session may have planned it
    environments = load_spec(SPEC_32B).environments
    assert len(environments) == 3
    with counting_plans() as counts:
        files = render_to_dict(SPEC_32B)
    assert "app.py" in files
    assert counts == Counter({env: 1 for env in environments})


def test_server_args_runs_no_plan() -> None:
    from liftdeploy.planner.report import plan
    from liftdeploy.render.vllm_args import server_args

    resolved = load_spec(SPEC_32B).resolve("production")
    planned = plan(resolved)
    with counting_plans() as counts:
        argv = server_args(resolved, planned.lifecycle)
    assert counts == Counter()
    shutdown = argv[argv.index("--shutdown-timeout") + 1]
    assert int(shutdown) < planned.exit_grace_period_s


def test_a_plan_is_frozen_and_complete() -> None:
    import dataclasses

    import pytest

    from liftdeploy.planner.report import plan

    resolved = load_spec(SPEC_32B).resolve("staging")
    planned = plan(resolved)
    with pytest.raises(dataclasses.FrozenInstanceError):
        planned.startup_timeout_s = 1  # type: ignore[misc]
    assert planned.startup_timeout_s > planned.healthy_within_s > 0
    assert planned.exit_grace_period_s > 0 and planned.reservation is not None
    assert planned.download is not None and planned.download.timeout_s > 0
