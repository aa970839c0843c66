"""Hostile spec values (issue 23, items 3, 10, 13, 14, 15): no value becomes a vLLM flag, every
extra_args token is read as vLLM reads it, one Modal name rule, revisions are git ref names
(never paths), and a lone surrogate is refused by `validate`, naming its field.

Specs go through `liftdeploy validate --json` in one subprocess per test (many files at once);
what vLLM would do with an argv is asked of vLLM's own parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_cli_spec import liftdeploy
from test_extra_args import _parsed, vllm_parser  # noqa: F401 - the fixture
from test_spec import spec

from liftdeploy.errors import PlanError
from liftdeploy.render.vllm_args import server_args
from liftdeploy.spec.specfile import spec_from_data


def validate_all(tmp_path: Path, specs: dict[str, dict[str, Any] | str]) -> dict[str, str | None]:
    """Each spec through `liftdeploy validate --json`: its error, or None when valid."""
    paths = []
    for label, data in specs.items():
        path = tmp_path / f"{label}.yaml"
        text = data if isinstance(data, str) else json.dumps(data)  # JSON is YAML, all quoted
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))
    result = liftdeploy("validate", "--json", *paths)
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    assert len(report) == len(specs)
    return {
        label: None if entry["valid"] else entry["error"].removeprefix(f"{path}: ")
        for label, path, entry in zip(specs, paths, report)
    }


def assert_refused(errors: dict[str, str | None], *needles: str) -> None:
    for label, error in errors.items():
        assert error is not None, f"{label} was accepted"
        assert "\n" not in error, error
        for needle in needles:
            assert needle in error, f"{label}: {error}"


# --- item 3: no spec value becomes a flag ---------------------------------------------------

FLAG_LIKE = [
    "--allowed-origins.*",
    "--allowed-origins",
    "-x",
    "--",
    "-1.5",
    "-.5",
    "--help",
    "--api-key.x",
    "-tp",
    "-1e5",
    "--middleware=evil.mod",
]


def test_a_value_that_vllm_reads_as_a_flag_is_refused_in_every_field(tmp_path: Path) -> None:
    specs: dict[str, Any] = {}
    for i, value in enumerate(FLAG_LIKE):
        specs[f"served-{i}"] = spec(model={"served_model_name": value})
    specs["model-id"] = spec(model={"id": "--allowed-origins.*/m"})
    # Only one environment's overlay sets it: every environment's argv is read.
    staging = spec(model={"served_model_name": "svc"})
    staging["environments"] = {
        "production": {"production": True},
        "staging": {"model": {"served_model_name": "--allowed-origins.*"}},
    }
    specs["overlay"] = staging
    kept = ["-1", "-", "a.b", "x--allowed-origins.*", "org/m-1.5"]
    specs |= {f"kept-{i}": spec(model={"served_model_name": value}) for i, value in enumerate(kept)}
    errors = validate_all(tmp_path, specs)
    assert [label for label, error in errors.items() if error is None] == [
        f"kept-{i}" for i in range(len(kept))
    ]
    errors = {label: error for label, error in errors.items() if not label.startswith("kept")}
    assert_refused(
        errors,
        "would reach vLLM's command line as a flag",
        "use a value that does not start with '-'",
    )
    assert "model.served_model_name '--allowed-origins.*'" in errors["served-0"]
    assert "model.id '--allowed-origins.*/m'" in errors["model-id"]
    assert "in environment 'staging'" in errors["overlay"]


def test_the_rule_is_vllms_own(vllm_parser: Any) -> None:  # noqa: F811
    """Every value vLLM's parser misreads in the whole rendered argv is one liftdeploy refuses,
    and every value liftdeploy accepts, vLLM reads as written."""
    from liftdeploy.errors import SpecError

    values = FLAG_LIKE + ["-1", "-", "a.b", "x.y-z", "-0", "--x y", "-q fp8", "7", "a=b", "-x.y"]
    refused_and_misread = 0
    for value in values:
        base = spec(model={"id": "org/m", "served_model_name": "svc"})
        deployment = spec_from_data(base).resolve()
        argv = server_args(deployment)
        argv[argv.index("svc")] = value  # the argv as it would be rendered with this value
        parsed = _parsed(vllm_parser, argv[2:])  # _parsed adds its own --model
        read_right = (
            parsed is not None
            and parsed["served_model_name"] == [value]
            and parsed["model_tag"] is None
            and parsed["allowed_origins"] == []
        )
        try:
            spec_from_data(spec(model={"id": "org/m", "served_model_name": value})).resolve()
            accepted = True
        except SpecError:
            accepted = False
        assert read_right or not accepted, f"{value!r}: accepted but vLLM reads {parsed}"
        refused_and_misread += not accepted and not read_right
    assert refused_and_misread >= 8  # the payloads are real: vLLM misreads them
    # The issue's: a served model name that opens CORS to every origin.
    parsed = _parsed(vllm_parser, ["--served-model-name", "--allowed-origins.*", "--seed", "1"])
    assert parsed is not None and parsed["allowed_origins"] == {"*": "--seed"}


# --- item 15: engine.extra_args --------------------------------------------------------------

BAD_EXTRA_ARGS = {
    "help": (["--help"], "makes vLLM print and exit"),
    "short-help": (["-h"], "makes vLLM print and exit"),
    "help-all": (["--help=all"], "makes vLLM print and exit"),
    "version": (["--version"], "makes vLLM print and exit"),
    "leading-space": ([" --seed", "1"], "leading or trailing whitespace"),
    "trailing-space": (["--seed ", "1"], "leading or trailing whitespace"),
    "value-space": (["--seed", "1 "], "leading or trailing whitespace"),
    "tab": (["\t--enforce-eager"], "leading or trailing whitespace"),
    "stray": (["stray"], "follows no flag that takes a value"),
    "value-of-a-switch": (["--enable-prefix-caching", "true"], "follows no flag that takes"),
    "two-values": (["--seed", "1", "2"], "follows no flag that takes a value"),
    "missing-value": (["--seed"], "needs a value"),
    "value-is-a-flag": (["--seed", "--enable-prefix-caching"], "needs a value"),
    "dotted-needs-value": (["--compilation-config.mode"], "needs a value"),
    "negative-decimal": (["--seed", "-1.5"], "unless it is a whole number"),
    "hidden-flag": (
        ["--chat-template", "--allowed-origins.*"],
        "needs a value before '--allowed-origins.*'",
    ),
    "owned": (["--allowed-origins.x", "1"], "is set by cors.allowed_origins"),
}


def test_extra_args_are_flags_vllm_has_and_their_values(tmp_path: Path) -> None:
    specs = {
        label: spec(engine={"extra_args": args}) for label, (args, _) in BAD_EXTRA_ARGS.items()
    }
    specs["version-newer-vllm"] = spec(
        engine={"vllm_version": "0.33.0", "extra_args": ["--version"]}
    )
    errors = validate_all(tmp_path, specs)
    assert_refused(errors, "engine.extra_args")
    for label, (_, needle) in BAD_EXTRA_ARGS.items():
        assert needle in errors[label], f"{label}: {errors[label]}"
    assert "makes vLLM print and exit" in errors["version-newer-vllm"]


GOOD_EXTRA_ARGS = [
    ["--seed", "-1", "-O3"],
    ["--enable-prefix-caching", "--block-size=32"],
    ["--compilation-config.mode", "3", "--seed=5"],
    ["--chat-template", "template.jinja", "--no-enable-prefix-caching"],
]


def test_extra_args_liftdeploy_refuses_are_those_vllm_misreads(vllm_parser: Any) -> None:  # noqa: F811
    from liftdeploy.errors import SpecError

    def accepted(args: list[str]) -> bool:
        try:
            spec_from_data(spec(engine={"extra_args": args}))
            return True
        except SpecError:
            return False

    for args in GOOD_EXTRA_ARGS:
        deployment = spec_from_data(spec(engine={"extra_args": args})).resolve()
        parsed = _parsed(vllm_parser, server_args(deployment)[2:])
        assert parsed is not None and parsed["model_tag"] is None, args
    # What vLLM does with the refused ones: exits, fails, or serves a "model" named by a value.
    for label in (
        "help",
        "short-help",
        "help-all",
        "leading-space",
        "tab",
        "stray",
        "value-of-a-switch",
        "two-values",
        "missing-value",
        "value-is-a-flag",
        "dotted-needs-value",
        "negative-decimal",
        "hidden-flag",
    ):
        args = BAD_EXTRA_ARGS[label][0]
        try:
            parsed = _parsed(vllm_parser, ["--seed", "0", *args])
        except Exception:  # noqa: BLE001 - vLLM's own rewrite fails (an IndexError)
            parsed = None
        misread = (
            parsed is None
            or parsed["model_tag"] is not None
            or parsed["chat_template"] == ("--allowed-origins.*")
        )
        assert misread or label == "hidden-flag", (label, parsed and parsed["model_tag"])
        assert not accepted(args), label


# --- item 13: Modal object names -------------------------------------------------------------

BAD_NAMES = ["../../x", "--help", "a b", ".hidden", "x" * 65, "ap-" + "a1" * 11, "a/b", "é"]


def test_one_modal_name_rule_for_every_object(tmp_path: Path) -> None:
    specs: dict[str, Any] = {}
    for i, name in enumerate(BAD_NAMES):
        specs[f"dict-{i}"] = spec(storage={"dicts": [name]})
        specs[f"volume-{i}"] = spec(
            storage={
                "volumes": [
                    {"name": name, "mount_path": "/root/.cache/huggingface", "purpose": "weights"}
                ]
            }
        )
    specs["shared"] = spec(storage={"dicts": ["ok"], "shared": ["../x"]})
    errors = validate_all(tmp_path, specs)
    assert_refused(
        errors,
        "is not a Modal object name",
        "letters, digits, '.', '_' or '-', starting with a letter or digit",
    )
    assert "storage.dicts entry '../../x'" in errors["dict-0"]
    assert "storage.volumes name '--help'" in errors["volume-1"]

    for field in ("secrets",):
        secret = validate_all(tmp_path, {"s": spec(storage={field: ["--help"]})})["s"]
        assert secret is not None and "not a secret name" in secret
    app_id = validate_all(tmp_path, {"a": {**spec(), "name": "ap-" + "ab" * 11}})["a"]
    assert app_id is not None and "App ID" in app_id
    envs = {"production": {"production": True}, "staging": {"modal_environment": "--help"}}
    env = validate_all(tmp_path, {"e": {**spec(), "environments": envs}})["e"]
    assert env is not None and "is not a Modal environment name" in env


def test_names_liftdeploy_accepts_modal_accepts(tmp_path: Path) -> None:
    from modal._utils.name_utils import is_valid_object_name

    from liftdeploy.spec.model import is_modal_name

    for name in [*BAD_NAMES, "ok", "a.b_c-d", "x" * 64, "A1", "ap-short"]:
        assert not is_modal_name(name) or is_valid_object_name(name), name


# --- item 14: revisions are ref names, never paths -------------------------------------------

BAD_REVISIONS = [
    "/abs",
    "../../x",
    "a/../b",
    "-x",
    "a b",
    "x~1",
    "x^",
    "a:b",
    "?",
    "a*",
    "[a",
    "a\\b",
    ".hidden",
    "a/.b",
    "a//b",
    "a/",
    "a.",
    "x.lock",
    "@",
    "a@{1}",
    "tab\tx",
    "--help",
]


def test_a_revision_is_a_commit_tag_or_branch(tmp_path: Path) -> None:
    errors = validate_all(
        tmp_path, {f"r{i}": spec(model={"revision": r}) for i, r in enumerate(BAD_REVISIONS)}
    )
    assert_refused(errors, "is not a commit hash, tag or branch name")
    assert "model.revision '/abs'" in errors["r0"]
    good = ["main", "v1.0", "refs/pr/1", "feature/x-y", "a" * 40]
    assert validate_all(
        tmp_path, {f"g{i}": spec(model={"revision": r}) for i, r in enumerate(good)}
    ) == {f"g{i}": None for i in range(len(good))}


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


CONFIG = {
    "model_type": "qwen2",
    "hidden_size": 3584,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "num_hidden_layers": 28,
    "vocab_size": 152064,
    "intermediate_size": 18944,
    "torch_dtype": "bfloat16",
}


def _plant(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(CONFIG), encoding="utf-8")


def test_the_planner_never_follows_a_revision_out_of_its_caches(caches: Path) -> None:
    from liftdeploy.planner.arch import load_architecture

    outside = caches / "outside"
    _plant(outside)
    hub_configs = caches / "cache" / "liftdeploy" / "hub-configs" / "acme" / "m"
    for revision in [str(outside), "../../../../outside", "../../../outside"]:
        with pytest.raises(PlanError, match="is not a commit hash, tag or branch name"):
            load_architecture("acme/m", revision, fetch=False)
    with pytest.raises(PlanError, match="not an `org/name` Hub id"):
        load_architecture("../outside", fetch=True)
    # The Hugging Face cache: a refs file that names a path is not followed.
    repo = caches / "hf" / "hub" / "models--acme--m"
    (repo / "snapshots").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("../../../../outside", encoding="utf-8")
    with pytest.raises(PlanError, match="no architecture for 'acme/m'"):
        load_architecture("acme/m", "main", fetch=False)
    # What liftdeploy's cache holds is labelled as what it is.
    _plant(hub_configs / "main")
    arch = load_architecture("acme/m", "main", fetch=False)
    assert "liftdeploy's cache" in arch.source and "saved there by hand" in arch.source


# --- item 10: lone surrogates -----------------------------------------------------------------

BASE = "name: svc\nmodel: {id: org/m, max_model_len: 4096}\ngpu: {type: H100}\n"
SURROGATES = {
    "served": (
        'name: svc\nmodel: {id: org/m, max_model_len: 4096, served_model_name: "a\\ud800"}\n'
        "gpu: {type: H100}\n",
        "model.served_model_name",
    ),
    "description": (BASE + 'description: "\\udfff"\n', "description"),
    "dict": (BASE + 'storage: {dicts: ["ok", "\\ud800"]}\n', "storage.dicts[1]"),
    "extra-args": (
        BASE + 'engine: {extra_args: ["--chat-template", "\\ud83d"]}\n',
        "engine.extra_args[1]",
    ),
    "overlay": (
        BASE + "environments: {production: {production: true}, "
        'staging: {model: {served_model_name: "\\ud800"}}}\n',
        "environments.staging.model.served_model_name",
    ),
    "key": (
        BASE + 'environments: {production: {production: true}, staging: {"\\ud800": 1}}\n',
        "environments.staging",
    ),
}


def test_a_lone_surrogate_is_refused_naming_its_field(tmp_path: Path) -> None:
    errors = validate_all(tmp_path, {label: text for label, (text, _) in SURROGATES.items()})
    assert_refused(errors, "holds a lone surrogate escape")
    for label, (_, field) in SURROGATES.items():
        assert errors[label].startswith(field), errors[label]  # type: ignore[union-attr]
    # YAML does not join a pair of \u escapes (JSON would): the character's own escape works.
    both = validate_all(
        tmp_path,
        {
            "pair": BASE + 'description: "\\ud83d\\ude00"\n',
            "whole": BASE + 'description: "\\U0001F600 \U0001f600"\n',
        },
    )
    assert both["pair"] is not None and "\\U0001F600, not the pair" in both["pair"]
    assert both["whole"] is None
