"""`engine.extra_args` read the way vLLM's parser reads it: a flag the spec owns cannot be set
in any spelling (abbreviations, underscores, `=value`, dotted JSON, short options).

The option table is package data (no vLLM import at validate time); here it is compared with
the installed vLLM's own parser, and every spelling's reading with what that parser does."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import pytest
from test_spec import spec

from liftdeploy.errors import SpecError
from liftdeploy.spec import catalog
from liftdeploy.spec.argv import server_option
from liftdeploy.spec.specfile import spec_from_data

# (token, its value or None): each token sets a flag the spec owns, most by abbreviation.
OWNED_SPELLINGS = [
    ("--allowed-orig", '["*"]'),
    ("--middlew", "evil.mod"),
    ("--api-k", "abc"),
    ("--max_num_se", "3"),
    ("--no-enforce-e", None),
    ("-tp", "2"),
    ("-qfp8", None),
    ("--structured_outputs_config.backend", "xgrammar"),
    ("--served-model=x", None),
    ("-ep", None),
    ("--gpu-memory-util", "0.5"),
    ("--conf", "x.yaml"),
]
OTHER_SPELLINGS = [
    ("--seed", "5"),
    ("--see", "5"),
    ("-O3", None),
    ("--enable-prefix-caching", None),
    ("--no-enable-prefix-caching", None),
    ("--block_size=32", None),
]
REFUSED_BY_VLLM = [("--conf", "x.yaml"), ("--nope", "1"), ("-d", "2")]


def test_issue_example_is_refused_in_every_spelling() -> None:
    for token, value in OWNED_SPELLINGS:
        args = [token] if value is None else [token, value]
        if token == "--conf":
            continue  # ambiguous in vLLM: refused below, with the candidates
        with pytest.raises(SpecError, match=r"is set by"):
            spec_from_data(spec(engine={"extra_args": args}))


def test_unclear_flags_are_refused_with_the_full_name() -> None:
    cases = {
        "--see": "vLLM reads as --seed; write --seed in full",
        "--conf": "could read it as any of --config, --config-format",
        "--nope": "has no such option",
    }
    for token, message in cases.items():
        with pytest.raises(SpecError, match=message):
            spec_from_data(spec(engine={"extra_args": [token, "1"]}))
    accepted = spec_from_data(spec(engine={"extra_args": ["--seed", "-1", "-O3"]}))
    assert accepted.engine.extra_args == ["--seed", "-1", "-O3"]
    newer = spec_from_data(spec(engine={"vllm_version": "0.33.0", "extra_args": ["--new-flag"]}))
    assert newer.engine.extra_args == ["--new-flag"]  # another release may have it


@pytest.fixture(scope="module")
def vllm_parser() -> Any:
    pytest.importorskip("vllm", reason="vLLM (the twin extra) is not installed")
    from liftdeploy.render.vllm_options import server_parser

    return server_parser()


def test_option_table_is_the_installed_vllms(vllm_parser: Any) -> None:
    from liftdeploy.render.vllm_options import option_table

    assert option_table(vllm_parser) == catalog.vllm_server_options(), (
        "regenerate it: python -m liftdeploy.render.vllm_options"
    )


def _parsed(parser: Any, argv: list[str]) -> dict[str, Any] | None:
    """vLLM's reading of an argv (None when its parser refuses it)."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return vars(parser.parse_args(["--model", "m", *argv]))
    except SystemExit:
        return None


def test_each_spelling_reads_as_vllm_reads_it(vllm_parser: Any) -> None:
    baseline = _parsed(vllm_parser, [])
    assert baseline is not None
    dests = {s: a.dest for a in vllm_parser._actions for s in a.option_strings}
    for token, value in OWNED_SPELLINGS + OTHER_SPELLINGS:
        if (token, value) in REFUSED_BY_VLLM:
            continue
        argv = [token] if value is None else [token, value]
        parsed = _parsed(vllm_parser, argv)
        assert parsed is not None, f"vLLM refuses {argv}"
        changed = {dest for dest, v in parsed.items() if v != baseline[dest]}
        reading = server_option(token)
        assert reading is not None
        assert dests[reading[0]] in changed or token.startswith("--no-"), (token, changed)
    for token, value in REFUSED_BY_VLLM:
        assert _parsed(vllm_parser, [token, value]) is None
        with pytest.raises(ValueError):
            server_option(token)
