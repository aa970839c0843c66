"""pin, download: the weights a service serves, fixed to a commit and fetched onto its Volume.

The work is in liftdeploy.ops.hub (the Hub lookup and the in-place edit) and
liftdeploy.ops.modal_cli (the `modal run` of the app's download function).
"""

from __future__ import annotations

import argparse

from liftdeploy.cli import common


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pin", help="write the Hub commit hash of model.revision into the spec (comments kept)",
        description="Resolve model.revision (default: the model's default branch) to the commit "
        "hash it points to now, with huggingface_hub, and write it into the spec in place. "
        "Without --env: the base spec and every environment that sets its own model; with "
        "--env: that environment only. A gated or private model needs HF_TOKEN in the "
        "environment (never on the command line); HF_ENDPOINT selects another Hub.",
    )
    common.add_spec_argument(p)
    common.add_env_option(p)
    p.set_defaults(handler=pin)


def pin(args: argparse.Namespace) -> int:
    from liftdeploy.ops.hub import pin as pin_revisions

    path = common.spec_path(args.spec)
    changes, notes = pin_revisions(path, args.env)
    for text in notes:
        common.note(text)
    for change in changes:
        print(f"{path}: {change.key}: {change.old or 'unset'} -> {change.new}")
    return 0
