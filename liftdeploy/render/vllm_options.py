"""vLLM's server option table, read from the installed vLLM's own argument parser.

`liftdeploy.spec` checks `engine.extra_args` against this table without importing vLLM (the
table is package data: `liftdeploy/spec/data/vllm_server_options.json`), so the check runs at
`validate` time anywhere. Regenerate it after changing the pinned vLLM (`versions.VLLM_VERSION`):

    python -m liftdeploy.render.vllm_options

tests/test_extra_args.py fails when the file differs from what the installed vLLM gives.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TABLE_PATH = Path(__file__).resolve().parent.parent / "spec" / "data" / "vllm_server_options.json"


def server_parser() -> Any:
    """vLLM's own parser for `python -m vllm.entrypoints.openai.api_server` (vllm 0.32)."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    return make_arg_parser(FlexibleArgumentParser())


def option_table(parser: Any) -> dict[str, Any]:
    """Every option string of the parser -> the option it sets, named by its first long
    spelling (`-tp` and `--tensor-parallel-size` -> `--tensor-parallel-size`,
    `--no-enforce-eager` -> `--enforce-eager`); how many values each option takes (`values`:
    0, 1, "?" or "+", argparse's nargs); and the options that print and exit (`exits`)."""
    import argparse

    import vllm

    options, values, exits = {}, {}, []
    for action in parser._actions:  # argparse keeps no public list of its options
        strings = action.option_strings
        if not strings:
            continue
        canonical = next(
            (s for s in strings if s.startswith("--") and not s.startswith("--no-")), strings[0]
        )
        options.update({string: canonical for string in strings})
        values[canonical] = 1 if action.nargs is None else action.nargs
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            exits.append(canonical)
    return {
        "vllm_version": vllm.__version__.split("+")[0],
        "allow_abbrev": parser.allow_abbrev,
        "options": dict(sorted(options.items())),
        "values": dict(sorted(values.items())),
        "exits": sorted(exits),
    }


def main() -> None:
    table = option_table(server_parser())
    TABLE_PATH.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    print(
        f"wrote {TABLE_PATH} ({len(table['options'])} option strings, vLLM "
        f"{table['vllm_version']})",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
