"""Scaffolding a new model's service: the blank preset names everything after the new service,
`copier copy` and `liftdeploy init` write the same files, and the result plans cleanly."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hub_standin import hub_standin

from liftdeploy.render.regenerate import rendered_files
from liftdeploy.render.service import check, render

REPO = Path(__file__).resolve().parent.parent
STAMPS = re.compile(r"^(_src_path|_commit): .*\n", re.MULTILINE)
# Every identity of lift-sys's services in the examples: none may reach a new service.
LIFT_SYS_NAMES = (
    "lift-sys",
    "qwen25-coder-32b",
    "lift-sys-models",
    "lift-sys-torch-cache",
    "lift-sys-token-store",
    "lift-sys-user-prefs",
    "lift-sys.vercel.app",
    "prod-modal-secrets",
    "staging-modal-secrets",
    "localhost:3000",
    "qwen-vllm-models",
    "Qwen2.5-Coder",
)
CATALOG_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
"""A model the planner knows without the Hub."""
HUB_CONFIG = {
    "model_type": "qwen2",
    "hidden_size": 3584,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "num_hidden_layers": 28,
    "vocab_size": 152064,
    "intermediate_size": 18944,
    "max_position_embeddings": 32768,
    "torch_dtype": "bfloat16",
}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment a user's shell would have: own caches, no Hub token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        XDG_CACHE_HOME=str(tmp_path / "cache"), HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(REPO)
    )
    return env


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )


def copier_copy(dst: Path, *data: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    pairs = [arg for item in data for arg in ("--data", item)]
    return run(
        "-m",
        "copier",
        "copy",
        "--trust",
        "--defaults",
        "--quiet",
        "--vcs-ref",
        "HEAD",
        *pairs,
        str(REPO),
        str(dst),
        env=env,
    )


def init(dst: Path, *options: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run("-m", "liftdeploy.cli.main", "init", str(dst), *options, env=env)


def assert_clean_service(service: Path, env: dict[str, str]) -> dict[str, str]:
    files = rendered_files(service)
    for rel, text in files.items():
        for name in LIFT_SYS_NAMES:
            assert name not in text, f"{rel} carries lift-sys's {name!r}"
    done = run("-m", "liftdeploy.cli.main", "plan", str(service), "--all-envs", "--json", env=env)
    assert done.returncode == 0, done.stderr
    for report in json.loads(done.stdout):
        levels = [v["level"] for v in report["verdicts"]]
        assert levels == ["ok"], report["verdicts"]
    return files


def test_a_catalog_model_gets_a_service_of_its_own(tmp_path: Path, env: dict[str, str]) -> None:
    copied = copier_copy(
        tmp_path / "copied",
        "model_id=meta-llama/Llama-3.1-8B-Instruct",
        "name=my-llama",
        "gpu_type=L4",
        "dicts=sessions",
        env=env,
    )
    assert copied.returncode == 0, copied.stderr
    made = init(
        tmp_path / "made",
        "--model-id",
        "meta-llama/Llama-3.1-8B-Instruct",
        "--name",
        "my-llama",
        "--gpu-type",
        "L4",
        "--dicts",
        "sessions",
        env=env,
    )
    assert made.returncode == 0, made.stderr
    files = assert_clean_service(tmp_path / "made", env)
    assert {k: STAMPS.sub("", v) for k, v in rendered_files(tmp_path / "copied").items()} == {
        k: STAMPS.sub("", v) for k, v in files.items()
    }
    spec = files["deployment.yaml"]
    for expected in (
        "served_model_name: llama-3.1-8b-instruct",
        "name: my-llama-weights",
        "name: my-llama-compile-cache",
        "dicts: [my-llama-sessions]",
        "hf_token_secret: my-llama-huggingface",
        "preset: blank",
    ):
        assert expected in spec + files[".copier-answers.yml"], expected
    assert "cors" not in spec
    # The current format, and no planner figures in comments: they went stale after `set`.
    assert "\nversion: 2\n" in spec and "liftdeploy plan deployment.yaml" in spec
    assert not re.search(r"#.*(\$\d|\d GiB|\d s\b|holds \d)", spec), spec
    app = files["app.py"]
    assert '"my-llama-weights"' in app and '"llama-3.1-8b-instruct"' in app
    # `liftdeploy render` of the scaffolded spec records the same answers: no drift.
    render(tmp_path / "made" / "deployment.yaml", tmp_path / "rendered")
    assert rendered_files(tmp_path / "rendered")[".copier-answers.yml"].count("preset: blank") == 1
    assert check(tmp_path / "made") == []


def test_a_hub_model_is_sized_from_its_config_json(tmp_path: Path, env: dict[str, str]) -> None:
    with hub_standin() as hub:
        hub.add("acme/coder-7b", {"config.json": HUB_CONFIG})
        env["HF_ENDPOINT"] = hub.url
        made = init(tmp_path / "svc", "--model-id", "acme/coder-7b", env=env)
        assert made.returncode == 0, made.stderr
        assert any(r.endswith("/acme/coder-7b/resolve/main/config.json") for r in hub.requests)
    # The Hub is gone: planning reads the cached config.json.
    files = assert_clean_service(tmp_path / "svc", env)
    spec = files["deployment.yaml"]
    assert "name: svc\n" in spec and "served_model_name: coder-7b" in spec  # after DIR
    assert "dicts" not in spec  # none unless asked
    assert "type: L4" in spec  # the cheapest GPU that holds a 7B bf16 model


def test_an_example_model_starts_from_its_example(tmp_path: Path, env: dict[str, str]) -> None:
    made = init(
        tmp_path / "svc",
        "--model-id",
        "Qwen/Qwen3-Next-80B-A3B-Instruct-FP8",
        "--preset",
        "qwen3-next-80b",
        env=env,
    )  # asked for: never by default
    assert made.returncode == 0, made.stderr
    assert "preset: qwen3-next-80b" in (tmp_path / "svc" / ".copier-answers.yml").read_text()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ((), "model_id is empty"),
        (
            (
                "--model-id",
                "meta-llama/Llama-3.1-70B-Instruct",
                "--gpu-type",
                "L4",
                "--gpu-count",
                "1",
            ),
            "cannot load",
        ),
        # Copier's own question checks (a choice, a validator) raise ValueError: a traceback.
        (("--preset", "nope"), "--preset 'nope' is not a preset; choose one of blank, qwen25"),
        (("--preset", "custom"), "--preset 'custom' is not a preset"),
        (("--preset", ""), "is not a preset"),
        # The blank preset's answers were checked by the spec model without its messages.
        (("--model-id", CATALOG_MODEL, "--gpu-type", "XYZ"), "gpu.type: Input should be 'T4'"),
        (("--model-id", CATALOG_MODEL, "--name", "My_Llama"), "name 'My_Llama' is not DNS-safe"),
        (("--model-id", CATALOG_MODEL, "--max-containers", "-1"), "runtime.max_containers: -1"),
        (("--model-id", CATALOG_MODEL, "--gpu-count", "-3"), "gpu.count: -3 is out of range"),
        (("--preset", "qwen25-coder-32b", "--name", "My_Llama"), "is not DNS-safe"),
        # A Dict name with a control character broke the generated YAML (a two-line error).
        (("--model-id", CATALOG_MODEL, "--dicts", "a\x01"), "is not a Modal object name"),
        # Bytes that are not UTF-8 reach Python as lone surrogates, which no file can hold.
        (
            ("--model-id", CATALOG_MODEL, "--description", "caf\udcff"),
            "--description: the value is not valid UTF-8",
        ),
        (("--model-id", CATALOG_MODEL, "--name", "\udcff"), "--name: the value is not valid"),
    ],
)
def test_init_refuses_with_one_line(
    tmp_path: Path,
    env: dict[str, str],
    options: tuple[str, ...],
    message: str,
) -> None:
    done = init(tmp_path / "svc", *options, env=env)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "svc").exists()


def test_copier_copy_of_an_example_model_is_blank_unless_the_example_is_named(
    tmp_path: Path,
    env: dict[str, str],
) -> None:
    # The example's model alone used to pick the example, and with it lift-sys's resources.
    copied = copier_copy(
        tmp_path / "svc", "model_id=Qwen/Qwen2.5-Coder-32B-Instruct", "name=my-coder", env=env
    )
    assert copied.returncode == 0, copied.stderr
    assert "preset: blank" in (tmp_path / "svc" / ".copier-answers.yml").read_text()
    for rel, text in rendered_files(tmp_path / "svc").items():
        for name in ("lift-sys", "prod-modal-secrets", "qwen-vllm-models"):
            assert name not in text, f"{rel} carries lift-sys's {name!r}"


@pytest.mark.parametrize(
    "data", [("name=My_Llama",), ("preset=qwen25-coder-32b", "name=My_Llama"), ("preset=custom",)]
)
def test_copier_copy_refuses_with_one_line(
    tmp_path: Path,
    env: dict[str, str],
    data: tuple[str, ...],
) -> None:
    done = copier_copy(tmp_path / "svc", f"model_id={CATALOG_MODEL}", *data, env=env)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    message = [
        line
        for line in done.stderr.splitlines()
        if line.strip() and "DirtyLocalWarning" not in line and line.strip() != "warn("
    ]
    assert len(message) == 1, done.stderr
    expected = {"preset=custom": "`liftdeploy render .`"}
    assert expected.get(data[-1], "is not DNS-safe") in message[0], message
    assert not (tmp_path / "svc").exists()


def test_init_ranks_gpus_per_million_tokens_at_the_demand_it_is_given(
    tmp_path: Path,
    env: dict[str, str],
) -> None:
    """At $/hour the 7B takes the cheapest GPU; at a high demand the cheapest per million
    tokens is a faster one (fewer containers); init says which ranking chose it (issue 25)."""
    with hub_standin() as hub:
        hub.add("acme/coder-7b", {"config.json": HUB_CONFIG})
        env["HF_ENDPOINT"] = hub.url
        quiet = init(tmp_path / "quiet", "--model-id", "acme/coder-7b", env=env)
        busy = init(
            tmp_path / "busy",
            "--model-id",
            "acme/coder-7b",
            "--requests-per-minute",
            "6000",
            env=env,
        )
    assert quiet.returncode == 0 and busy.returncode == 0, quiet.stderr + busy.stderr
    assert "GPU: L4 x1" in quiet.stderr and "cheapest per hour first" in quiet.stderr
    assert "set workload.requests_per_minute to rank by $ per million tokens" in quiet.stderr
    assert (
        "cheapest per million output tokens first at workload.requests_per_minute 6000"
        in busy.stderr
    )
    spec = (tmp_path / "busy" / "deployment.yaml").read_text()
    assert "requests_per_minute: 6000" in spec
    busy_gpu = spec.split("gpu:\n  type: ")[1].split("\n")[0]
    assert busy_gpu in ("H100", "H200", "B200"), busy_gpu  # bandwidth per dollar wins
    from liftdeploy.planner.gpu_support import refusal

    assert refusal(busy_gpu, "bfloat16", "none") is None  # never one vLLM refuses
    assert_clean_service(tmp_path / "busy", env)  # plans without a warning, offline
    bad = init(
        tmp_path / "bad", "--model-id", "acme/coder-7b", "--requests-per-minute", "-1", env=env
    )
    assert (
        bad.returncode != 0
        and "not a positive, finite number of requests a minute" in bad.stderr
        and "Traceback" not in bad.stderr
    )
