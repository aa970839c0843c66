"""The rendered CI workflow (issues 15 and 27), verified without GitHub or Modal.

- Each example's workflow, rendered by the current template, validates against GitHub's workflow schema (check-jsonschema's vendored copy, offline) and
  passes zizmor's offline audits.
- Every `liftdeploy ...` line parses with liftdeploy's own parser.
- Its shell steps run in order, as a GitHub runner would run them (`bash -eo pipefail`, `if:`
  conditions, step outputs), in a real rendered service committed to git, with `modal` and `pip`
  on PATH replaced by recorders and `liftdeploy` by a wrapper that records each call and runs
  the real CLI. `bootstrap` and `download` reach Modal only through its SDK, so the wrapper stops
  them at that boundary after liftdeploy's parser accepted them. Every recorded `modal` call
  parses with modal's own click CLI. Health and smoke go over HTTP: to the local twin (real
  vLLM) for a healthy staging, and to a local TLS receiver that fails completions for a broken
  production deploy.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import re
import shlex
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from test_ops import modal_cli_parse
from test_regenerate import commit_all, git

from liftdeploy.cli.main import build_parser
from liftdeploy.render.service import render
from liftdeploy.render.template_version import INSTALL_KEY, LOCAL_SOURCE_FIX

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"
WORKFLOW = Path(".github/workflows/deploy.yml")
BIN = Path(sys.executable).parent
SDK_BOUND = ("bootstrap", "download", "spend")
"""liftdeploy commands that reach Modal through its SDK, not the `modal` CLI."""
MODAL_COMMANDS = {
    "bootstrap",
    "download",
    "deploy",
    "warmup",
    "health",
    "smoke",
    "rollback",
    "spend",
}
"""liftdeploy commands that call Modal (its SDK, its CLI, or its URL lookup): only their steps
may see the Modal token."""
EXAMPLE_NAMES = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))


def load_workflow(service: Path) -> dict[str, Any]:
    return YAML(typ="safe").load((service / WORKFLOW).read_text())  # YAML 1.2: `on` is a key


def run_scripts(workflow: dict[str, Any]) -> list[str]:
    return [
        step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step
    ]


@pytest.fixture(scope="module")
def example_services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each example rendered by the current template (examples/rendered/ is re-rendered by
    hand, so it may lag behind the template under test)."""
    root = tmp_path_factory.mktemp("examples")
    return {name: render(EXAMPLES / f"{name}.yaml", root / name) for name in EXAMPLE_NAMES}


# --- linting: GitHub's schema, zizmor, liftdeploy's parser ---------------------------------------


def tool(name: str) -> str:
    path = BIN / name
    if not path.is_file():
        pytest.skip(f"{name} is not installed (pip install check-jsonschema zizmor: the dev extra)")
    return str(path)


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_workflow_matches_githubs_schema_and_passes_zizmor(
    example: str, example_services: dict[str, Path]
) -> None:
    workflow = example_services[example] / WORKFLOW
    schema = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr
    audit = subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", str(workflow)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "No findings to report" in audit.stdout + audit.stderr


def liftdeploy_lines(script: str) -> list[list[str]]:
    """Each `liftdeploy ...` command in a shell script, as argv (redirections dropped)."""
    commands = []
    for line in script.splitlines():
        words = shlex.split(line.strip(), comments=True)
        if words[:1] == ["liftdeploy"]:
            cut = next((i for i, w in enumerate(words) if w in (">", ">>", "|", "2>")), len(words))
            commands.append(words[:cut])
    return commands


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_every_liftdeploy_line_parses_with_liftdeploys_parser(
    example: str, example_services: dict[str, Path]
) -> None:
    commands = [
        argv
        for script in run_scripts(load_workflow(example_services[example]))
        for argv in liftdeploy_lines(script)
    ]
    names = [argv[1] for argv in commands]
    assert names == [
        "check",
        "bootstrap",
        "download",
        "deploy",
        "ci-warmup",
        "warmup",
        "health",
        "smoke",
        "rollback",
        "spend",
    ]
    for argv in commands:
        try:
            build_parser(argv[1]).parse_args(argv[1:])
        except SystemExit as exc:
            pytest.fail(f"liftdeploy's parser rejects {shlex.join(argv)} (exit {exc.code})")


# --- a GitHub runner, as far as this workflow needs one -----------------------------------------

_TOKEN = re.compile(r"\s*(\|\||&&|==|!=|\(|\)|'[^']*'|[A-Za-z_][\w.-]*\(\)|[A-Za-z_][\w.-]*)")
_STATUS_FUNCTION = re.compile(r"\b(success|failure|always|cancelled)\(\)")
_EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}")


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    """GitHub's expression language, the part this workflow uses: literals, context paths,
    status functions, ==, !=, &&, || (which return an operand, as in GitHub), parentheses.
    Anything else raises, so the template cannot use what this runner does not model."""
    tokens, at = [], 0
    while at < len(expression.rstrip()):
        match = _TOKEN.match(expression, at)
        assert match, f"unsupported expression syntax at {expression[at:]!r}"
        tokens.append(match.group(1))
        at = match.end()
    position = 0

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def primary() -> Any:
        token = take()
        if token == "(":
            value = either()
            assert take() == ")"
            return value
        if token.startswith("'"):
            return token[1:-1]
        if token.endswith("()"):
            return context["functions"][token[:-2]]
        namespace, *path = token.split(".")
        value = context[namespace]  # an unknown namespace is a KeyError: not modelled here
        for key in path:
            value = value.get(key, "") if isinstance(value, dict) else ""
        return value

    def compare() -> Any:
        left = primary()
        while peek() in ("==", "!="):
            operator, right = take(), primary()
            left = (left == right) if operator == "==" else (left != right)
        return left

    def both() -> Any:
        value = compare()
        while peek() == "&&":
            take()
            right = compare()
            value = right if value else value
        return value

    def either() -> Any:
        value = both()
        while peek() == "||":
            take()
            right = both()
            value = value if value else right
        return value

    result = either()
    assert position == len(tokens), f"unparsed tokens in {expression!r}"
    return result


def substitute(text: Any, context: dict[str, Any]) -> str:
    return _EXPRESSION.sub(lambda m: str(evaluate(m.group(1), context) or ""), str(text))


@dataclass
class Run:
    """What a workflow run did: each step's outcome, the recorded calls, the output."""

    outcomes: dict[str, str] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    output: str = ""
    job_skipped: bool = False

    def sequence(self) -> list[str]:
        return [shlex.join(call) for call in self.calls]

    def index(self, *prefix: str) -> int:
        return next(i for i, call in enumerate(self.calls) if tuple(call[: len(prefix)]) == prefix)


RECORDER = """#!{python}
import json, os, sys
with open(os.environ["RECORDER_LOG"], "a") as log:
    log.write(json.dumps([{name!r}, *sys.argv[1:]]) + "\\n")
{tail}"""

LIFTDEPLOY_TAIL = """
from liftdeploy.cli.main import build_parser, main
if sys.argv[1:2] and sys.argv[1] in {sdk_bound!r}:
    build_parser(sys.argv[1]).parse_args(sys.argv[1:])  # Modal's SDK is the boundary
    sys.exit(0)
sys.exit(main(sys.argv[1:]))
"""


def recorders(bin_dir: Path) -> Path:
    bin_dir.mkdir()
    tails = {
        "modal": "",
        "pip": "sys.exit(int(os.environ.get('PIP_RECORDER_EXIT', '0')))",
        "liftdeploy": LIFTDEPLOY_TAIL.format(sdk_bound=SDK_BOUND),
    }
    for name, tail in tails.items():
        path = bin_dir / name
        path.write_text(RECORDER.format(python=sys.executable, name=name, tail=tail))
        path.chmod(0o755)
    return bin_dir


def run_workflow(
    service: Path,
    bin_dir: Path,
    *,
    event: str,
    environment: str | None = None,
    secrets: dict[str, str] | None = None,
    variables: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
    job_name: str = "deploy",
    workspace: Path | None = None,
    workflow_file: Path | None = None,
) -> Run:
    """Run one job's steps in order as GitHub would; `uses:` steps are the runner's own
    setup (checkout, Python) and are skipped: the service is already checked out. `workspace`
    (default: the service) is the checkout, and the steps run in its `working-directory`."""
    workspace = workspace or service
    workflow = YAML(typ="safe").load((workflow_file or service / WORKFLOW).read_text())
    job = workflow["jobs"][job_name]
    cwd = workspace / workflow.get("defaults", {}).get("run", {}).get("working-directory", ".")
    log = service.parent / f"calls-{event}.jsonl"
    log.unlink(missing_ok=True)
    run, steps, failed = Run(), {}, False
    context: dict[str, Any] = {
        "github": {"event_name": event},
        "inputs": {"environment": environment} if environment else {},
        "secrets": secrets or {},
        "vars": variables or {},
        "steps": steps,
        "env": {},
        "functions": {"success": True, "failure": False, "always": True},
    }
    if not evaluate(str(job.get("if", "success()")), context):
        run.job_skipped = True
        return run
    job_env = {key: substitute(value, context) for key, value in job.get("env", {}).items()}
    if "environment" in job:
        assert substitute(job["environment"], context) == job_env["LIFTDEPLOY_ENV"]
    base_env = {
        "PATH": f"{bin_dir}:{BIN}:/usr/bin:/bin",
        "HOME": str(service.parent),
        "PYTHONPATH": str(REPO_ROOT),
        "RECORDER_LOG": str(log),
        "GITHUB_EVENT_NAME": event,
        "NO_PROXY": "*",
        **(extra_env or {}),
        **job_env,
    }
    for number, step in enumerate(job["steps"]):
        if "run" not in step:
            continue
        name = step.get("id") or f"step{number}"
        context["env"] = base_env
        context["functions"] = {"success": not failed, "failure": failed, "always": True}
        condition = str(step.get("if", "success()"))
        if not _STATUS_FUNCTION.search(condition):
            condition = f"success() && ({condition})"
        if not evaluate(condition, context):
            steps[name] = {"outcome": "skipped", "outputs": {}}
            run.outcomes[step.get("name", name)] = "skipped"
            continue
        outputs = service.parent / f"output-{name}"
        outputs.write_text("")
        env = {
            **base_env,
            "GITHUB_OUTPUT": str(outputs),
            **{k: substitute(v, context) for k, v in step.get("env", {}).items()},
        }
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        outcome = "success" if proc.returncode == 0 else "failure"
        failed = failed or proc.returncode != 0
        steps[name] = {
            "outcome": outcome,
            "outputs": dict(
                line.split("=", 1) for line in outputs.read_text().splitlines() if "=" in line
            ),
        }
        run.outcomes[step.get("name", name)] = outcome
        run.output += f"--- {step.get('name', name)}: {outcome}\n{proc.stdout}{proc.stderr}"
    run.calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return run


def rendered_service(tmp_path: Path, example: str, requirement: str | None = None) -> Path:
    """A service rendered from an example and committed (its answers file as rendered, or
    recording `requirement` for CI as rendering by a reachable liftdeploy would)."""
    service = render(EXAMPLES / f"{example}.yaml", tmp_path / "svc")
    if requirement:
        answers = service / ".copier-answers.yml"
        answers.write_text(answers.read_text() + f"{INSTALL_KEY}: {requirement}\n")
    git(service, "init", "-q", "-b", "main")
    commit_all(service, "render")
    return service


# --- the install step -----------------------------------------------------------------------


def install_step(service: Path, bin_dir: Path, job_name: str = "deploy", **options: Any) -> Run:
    """Only the first shell step (install), as the runner would run it."""
    event = "schedule" if job_name == "spend" else "push"
    run = run_workflow(service, bin_dir, event=event, job_name=job_name, **options)
    first = next(iter(run.outcomes))
    run.outcomes = {first: run.outcomes[first]}
    run.calls = [c for c in run.calls if c[0] == "pip"]
    return run


@pytest.mark.parametrize("job_name", ["deploy", "spend"])
@pytest.mark.parametrize(
    "requirement",
    [
        "liftdeploy @ git+https://github.com/acme/liftdeploy@0123456789abcdef0123456789abcdef01234567",
        "liftdeploy==0.1.0",
        "../..",
    ],
)
def test_install_uses_the_recorded_requirement(
    tmp_path: Path, requirement: str, job_name: str
) -> None:
    service = rendered_service(tmp_path, "qwen3-coder-480b", requirement)
    run = install_step(service, recorders(tmp_path / "bin"), job_name)
    assert run.calls == [["pip", "install", "--quiet", requirement]]
    assert list(run.outcomes.values()) == ["success"], run.output


def test_install_refuses_a_local_source_and_names_the_variable(tmp_path: Path) -> None:
    # Rendered by this checkout's editable install: a path CI cannot reach, so nothing recorded.
    service = rendered_service(tmp_path, "qwen3-coder-480b")
    assert INSTALL_KEY not in (service / ".copier-answers.yml").read_text()
    bin_dir = recorders(tmp_path / "bin")
    run = install_step(service, bin_dir)
    assert run.calls == []  # no bare-name fallback: nothing is installed
    assert list(run.outcomes.values()) == ["failure"]
    errors = [line for line in run.output.splitlines() if line.startswith("::error::")]
    assert len(errors) == 1 and LOCAL_SOURCE_FIX in errors[0]

    run = install_step(service, bin_dir, variables={"LIFTDEPLOY_PIP": "liftdeploy==0.3.0"})
    assert run.calls == [["pip", "install", "--quiet", "liftdeploy==0.3.0"]]


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_no_step_that_installs_sees_a_secret_and_the_token_only_where_modal_is_called(
    example: str, example_services: dict[str, Path]
) -> None:
    workflow = load_workflow(example_services[example])
    text = (example_services[example] / WORKFLOW).read_text()
    assert "liftdeploy==" not in text  # never a bare (squattable) name
    assert "env" not in workflow and "secrets" not in json.dumps(workflow.get("defaults", {}))
    for job in workflow["jobs"].values():
        assert "secrets." not in json.dumps(job.get("env", {}))  # not job-wide
        for step in job["steps"]:
            env = json.dumps(step.get("env", {}))
            commands = {argv[1] for argv in liftdeploy_lines(step.get("run", ""))}
            if re.search(r"\bpip\b", step.get("run", "")):
                assert "secrets." not in env, step["name"]
            token = "secrets.MODAL_TOKEN_ID" in env and "secrets.MODAL_TOKEN_SECRET" in env
            assert token == bool(commands & MODAL_COMMANDS), step.get("name", step.get("uses"))


def concurrency_group(workflow: dict[str, Any], event: str, environment: str | None) -> str:
    return substitute(
        workflow["concurrency"]["group"],
        {
            "github": {"event_name": event},
            "inputs": {"environment": environment} if environment else {},
        },
    )


def test_one_concurrency_group_per_environment_for_every_trigger(
    example_services: dict[str, Path],
) -> None:
    workflow = load_workflow(example_services["qwen25-coder-32b"])
    dispatch = workflow["on"]["workflow_dispatch"]["inputs"]["environment"]
    assert dispatch["default"] == "staging"  # a manual run never defaults to production
    assert workflow["concurrency"]["cancel-in-progress"] is False
    push = concurrency_group(workflow, "push", None)
    groups = {
        env: concurrency_group(workflow, "workflow_dispatch", env) for env in dispatch["options"]
    }
    assert push == groups["staging"]
    assert len(set(groups.values())) == len(groups)  # one per environment
    # The daily spend job waits in no deploy's group (a newer pending run cancels an older one).
    assert concurrency_group(workflow, "schedule", None) not in {push, *groups.values()}


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_timeouts_come_from_the_plan(example: str, example_services: dict[str, Path]) -> None:
    from liftdeploy.planner.ci import GITHUB_JOB_LIMIT_MINUTES, ci_timeouts
    from liftdeploy.planner.download import download_estimate
    from liftdeploy.planner.report import plan
    from liftdeploy.spec.specfile import load_spec

    workflow = load_workflow(example_services[example])
    spec = load_spec(EXAMPLES / f"{example}.yaml")
    plans = [plan(spec.resolve(env)) for env in spec.environments]
    limits = ci_timeouts([p.download for p in plans], [p.startup_timeout_s for p in plans])
    download = next(
        step
        for step in workflow["jobs"]["deploy"]["steps"]
        if "liftdeploy download" in step.get("run", "")
    )
    whole_limit_s = max(
        d.timeout_s * (d.retries + 1)
        for d in (download_estimate(spec.resolve(e)) for e in spec.environments)
    )
    assert download["timeout-minutes"] == limits.download_minutes
    assert download["timeout-minutes"] * 60 >= whole_limit_s or limits.download_cut
    for job in workflow["jobs"].values():
        assert 0 < job["timeout-minutes"] <= GITHUB_JOB_LIMIT_MINUTES
    assert workflow["jobs"]["deploy"]["timeout-minutes"] > download["timeout-minutes"]
    if limits.download_cut:
        assert (
            "liftdeploy download deployment.yaml --env ENV"
            in (example_services[example] / WORKFLOW).read_text()
        )


def test_daily_job_alerts_on_yesterdays_spend_for_every_environment(tmp_path: Path) -> None:
    service = rendered_service(tmp_path, "qwen25-coder-32b", "liftdeploy==0.1.0")
    workflow = load_workflow(service)
    assert [entry["cron"] for entry in workflow["on"]["schedule"]] == ["17 6 * * *"]
    bin_dir = recorders(tmp_path / "bin")
    deploy = run_workflow(service, bin_dir, event="schedule")
    assert deploy.job_skipped  # a scheduled run deploys nothing
    run = run_workflow(
        service,
        bin_dir,
        event="schedule",
        job_name="spend",
        secrets={"LIFTDEPLOY_ALERT_WEBHOOK_URL": "https://hooks.example.com/x"},
    )
    assert set(run.outcomes.values()) == {"success"}, run.output
    assert [c for c in run.calls if c[0] == "liftdeploy"] == [
        ["liftdeploy", "spend", "deployment.yaml", "--all-envs", "--for", "yesterday", "--alert"]
    ]
    assert run_workflow(service, bin_dir, event="push", job_name="spend").job_skipped


def test_a_service_in_a_subfolder_gets_a_root_workflow_that_runs_there(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    service = repo / "services" / "qwen80b"
    proc = subprocess.run(
        [
            str(BIN / "liftdeploy"),
            "render",
            str(EXAMPLES / "qwen3-next-80b.yaml"),
            "-o",
            str(service),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "GitHub runs workflows only from the repository root" in proc.stderr
    assert "liftdeploy ci-workflow services/qwen80b" in proc.stderr
    answers = service / ".copier-answers.yml"
    answers.write_text(answers.read_text() + f"{INSTALL_KEY}: liftdeploy==0.1.0\n")
    proc = subprocess.run(
        [str(BIN / "liftdeploy"), "ci-workflow", "services/qwen80b"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    root_workflow = repo / ".github" / "workflows" / "deploy-qwen3-next-80b.yml"
    workflow = YAML(typ="safe").load(root_workflow.read_text())
    assert workflow["defaults"]["run"]["working-directory"] == "services/qwen80b"
    paths = workflow["on"]["push"]["paths"]
    assert "services/qwen80b/deployment.yaml" in paths
    assert ".github/workflows/deploy-qwen3-next-80b.yml" in paths
    assert all(p.startswith("services/qwen80b/") or p == paths[-1] for p in paths)
    for command in (
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows"],
        [tool("zizmor"), "--offline", "--no-progress"],
    ):
        checked = subprocess.run(
            [*command, str(root_workflow)], capture_output=True, text=True, timeout=120
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    commit_all(repo, "service and its root workflow")
    run = run_workflow(
        service,
        recorders(tmp_path / "bin"),
        event="push",
        workspace=repo,
        workflow_file=root_workflow,
    )
    assert set(run.outcomes.values()) <= {"success", "skipped"}, run.output
    assert [c[:2] for c in run.calls if c[0] in ("pip", "liftdeploy")][:3] == [
        ["pip", "install"],
        ["liftdeploy", "check"],
        ["liftdeploy", "bootstrap"],
    ]


# --- the whole path ---------------------------------------------------------------------------


def assert_modal_calls_parse(run: Run) -> None:
    for call in run.calls:
        if call[0] == "modal":
            modal_cli_parse(call)  # raises click's UsageError on a renamed flag


def test_push_of_a_multi_gpu_service_deploys_without_starting_a_container(tmp_path: Path) -> None:
    service = rendered_service(tmp_path, "qwen3-coder-480b", "liftdeploy==0.1.0")
    run = run_workflow(service, recorders(tmp_path / "bin"), event="push")
    assert set(run.outcomes.values()) <= {"success", "skipped"}, run.output
    assert [c[:2] for c in run.calls if c[0] == "liftdeploy"] == [
        ["liftdeploy", "check"],
        ["liftdeploy", "bootstrap"],
        ["liftdeploy", "download"],
        ["liftdeploy", "deploy"],
        ["liftdeploy", "ci-warmup"],
    ]
    assert run.outcomes["wait until healthy"] == "skipped"
    assert "multi-GPU, so a push deploys without starting it" in run.output
    assert_modal_calls_parse(run)


@pytest.mark.twin
def test_push_to_staging_runs_the_whole_path(tmp_path: Path, twin: Any) -> None:
    service = rendered_service(tmp_path, "qwen25-coder-32b", "liftdeploy==0.1.0")
    run = run_workflow(
        service,
        recorders(tmp_path / "bin"),
        event="push",
        secrets={"LIFTDEPLOY_API_KEY": twin.api_key, "MODAL_TOKEN_ID": "ak-test"},
        extra_env={"MODAL_ENDPOINT_URL": twin.url},
    )
    print("\n".join(run.sequence()))
    assert set(run.outcomes.values()) <= {"success", "skipped"}, run.output
    assert run.outcomes["roll back to the previous version"] == "skipped"
    deploy = run.index("modal", "deploy")
    assert run.index("liftdeploy", "bootstrap") < deploy
    assert run.index("liftdeploy", "download") < deploy
    assert run.index("liftdeploy", "check") < run.index("liftdeploy", "bootstrap")
    assert deploy < run.index("liftdeploy", "smoke")
    assert not any(c[:3] == ["modal", "app", "rollback"] for c in run.calls)
    assert ["--env", "staging"] == run.calls[run.index("liftdeploy", "deploy")][3:5]
    assert_modal_calls_parse(run)


def test_release_mode_ships_production_as_a_candidate_and_staging_as_a_deploy(
    tmp_path: Path,
) -> None:
    """release.ci: release: the workflow still passes GitHub's schema and zizmor; production
    gets `release start`, the bake, `release finish` and no plain deploy; staging is deployed
    as before, and every modal call parses with modal's CLI."""
    spec = tmp_path / "released.yaml"
    spec.write_text(
        (EXAMPLES / "qwen25-coder-32b.yaml").read_text()
        + "release:\n  ci: release\n  bake_s: 600\n"
    )
    service = render(spec, tmp_path / "svc")
    answers = service / ".copier-answers.yml"
    answers.write_text(answers.read_text() + f"{INSTALL_KEY}: liftdeploy==0.1.0\n")
    git(service, "init", "-q", "-b", "main")
    commit_all(service, "render")
    workflow = service / WORKFLOW
    schema = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr
    audit = subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", str(workflow)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert audit.returncode == 0 and "No findings to report" in audit.stdout + audit.stderr, (
        audit.stdout + audit.stderr
    )

    # The release and the checks of production's URL reach Modal (its SDK, its URLs): parsed
    # only, like the SDK-bound commands; the bake's sleep is recorded, not slept.
    bin_dir = recorders(tmp_path / "bin")
    (bin_dir / "liftdeploy").write_text(
        RECORDER.format(
            python=sys.executable,
            name="liftdeploy",
            tail=LIFTDEPLOY_TAIL.format(
                sdk_bound=(*SDK_BOUND, "release", "warmup", "health", "smoke")
            ),
        )
    )
    (bin_dir / "sleep").write_text(RECORDER.format(python=sys.executable, name="sleep", tail=""))
    (bin_dir / "sleep").chmod(0o755)

    run = run_workflow(service, bin_dir, event="workflow_dispatch", environment="production")
    assert set(run.outcomes.values()) <= {"success", "skipped"}, run.output
    assert run.outcomes["deploy"] == "skipped"
    assert [c[:3] for c in run.calls if c[0] in ("liftdeploy", "sleep")] == [
        ["liftdeploy", "check", "."],
        ["liftdeploy", "bootstrap", "deployment.yaml"],
        ["liftdeploy", "download", "deployment.yaml"],
        ["liftdeploy", "release", "start"],
        ["sleep", "600"],
        ["liftdeploy", "release", "finish"],
        ["liftdeploy", "ci-warmup", "deployment.yaml"],
        ["liftdeploy", "warmup", "deployment.yaml"],
        ["liftdeploy", "health", "deployment.yaml"],
        ["liftdeploy", "smoke", "deployment.yaml"],
    ]
    assert not any(c[:2] == ["modal", "deploy"] for c in run.calls)
    assert_modal_calls_parse(run)

    staging = run_workflow(service, bin_dir, event="push")
    assert set(staging.outcomes.values()) <= {"success", "skipped"}, staging.output
    assert not any(c[:2] == ["liftdeploy", "release"] for c in staging.calls)
    deploys = [c for c in staging.calls if c[:2] == ["modal", "deploy"]]
    assert len(deploys) == 1 and modal_cli_parse(deploys[0])[1]["name"].endswith("-staging")
    assert_modal_calls_parse(staging)


# --- a broken production deploy: healthy, but its answers fail ----------------------------------


def _self_signed(address: str, directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _outward_address() -> str | None:
    """An address of this machine that is not loopback (production refuses local URLs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if ipaddress.ip_address(address).is_loopback else address


class _BrokenDeployment(http.server.BaseHTTPRequestHandler):
    """Healthy, but every completion fails: what a bad production deploy looks like."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(200 if self.path == "/health" else 404, b"")

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer(500, b'{"error": {"message": "engine died", "type": "internal"}}')

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def broken_deployment(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(https URL, CA file) of a local TLS receiver on a non-loopback address."""
    address = _outward_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address for a production-like URL")
    cert, key = _self_signed(address, tmp_path)
    server = http.server.ThreadingHTTPServer((address, 0), _BrokenDeployment)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://{address}:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def test_production_run_whose_smoke_fails_rolls_back(
    tmp_path: Path, broken_deployment: tuple[str, Path]
) -> None:
    url, ca_file = broken_deployment
    service = rendered_service(tmp_path, "qwen25-coder-32b", "liftdeploy==0.1.0")
    run = run_workflow(
        service,
        recorders(tmp_path / "bin"),
        event="workflow_dispatch",
        environment="production",
        secrets={"LIFTDEPLOY_API_KEY": "test-key", "MODAL_TOKEN_ID": "ak-test"},
        extra_env={"MODAL_ENDPOINT_URL": url, "SSL_CERT_FILE": str(ca_file)},
    )
    print("\n".join(run.sequence()))
    assert run.outcomes["deploy"] == "success", run.output
    assert run.outcomes["health"] == "success", run.output
    assert run.outcomes["smoke test"] == "failure", run.output
    assert run.outcomes["roll back to the previous version"] == "success", run.output
    rollback = run.index("modal", "app", "rollback")
    assert run.index("liftdeploy", "smoke") < rollback
    assert run.calls[rollback][3] == "lift-sys-inference"  # production's app, no suffix
    assert run.index("liftdeploy", "download") < run.index("modal", "deploy")
    assert_modal_calls_parse(run)


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_runbook_setup_lists_every_secret_and_variable_the_workflow_reads(
    example: str, example_services: dict[str, Path]
) -> None:
    read = set(
        re.findall(
            r"\$\{\{ *(?:secrets|vars)\.(\w+) *\}\}",
            (example_services[example] / WORKFLOW).read_text(),
        )
    )
    runbook = (example_services[example] / "RUNBOOK.md").read_text()
    setup = runbook[runbook.index("Set up once") : runbook.index("What one run costs")]
    assert read and {name for name in read if f"`{name}`" not in setup} == set()
