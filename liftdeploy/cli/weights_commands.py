"""pin, download: the weights a service serves, fixed to a commit and fetched onto its Volume.

The work is in liftdeploy.ops.pinning (the Hub lookup and the in-place edit) and
liftdeploy.ops.deploy_policy (the checks before the `modal run` of the app's download function).
"""

from __future__ import annotations

import argparse

from liftdeploy.cli import common


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pin",
        help="write the Hub commit hash of model.revision into the spec (comments kept)",
        description="Resolve model.revision (default: the model's default branch) to the commit "
        "hash it points to now, with huggingface_hub, and write it into the spec in place. "
        "Without --env: the base spec and every environment that sets its own model; with "
        "--env: that environment only. A gated or private model needs HF_TOKEN in the "
        "environment (never on the command line); HF_ENDPOINT selects another Hub.",
    )
    common.add_spec_argument(p)
    common.add_env_option(p)
    p.set_defaults(handler=pin)

    p = subparsers.add_parser(
        "download",
        help="fill the weights Volume for an environment (`modal run` of the app's download_model)",
        description="Run the rendered app's download_model for one environment: its pinned "
        "revision into the shared weights Volume, with the time limit `liftdeploy plan` shows "
        "and retries. A snapshot already complete on the Volume is not fetched again.",
    )
    p.add_argument(
        "spec", metavar="SERVICE", help="a rendered service directory (or its deployment.yaml)"
    )
    common.add_env_option(p, required=True)
    p.add_argument("--dry-run", action="store_true", help="print the exact command and run nothing")
    p.set_defaults(handler=download)


def pin(args: argparse.Namespace) -> int:
    from liftdeploy.ops.pinning import pin as pin_revisions

    path = common.spec_path(args.spec)
    changes, notes = pin_revisions(path, args.env)
    for text in notes:
        common.note(text)
    for change in changes:
        print(f"{path}: {change.key}: {change.old or 'unset'} -> {change.new}")
    return 0


def download(args: argparse.Namespace) -> int:
    from liftdeploy.ops.deploy_policy import prepare_download
    from liftdeploy.ops.modal_runner import run_modal
    from liftdeploy.ops.service_files import locate_service
    from liftdeploy.spec.model import revision_warnings

    service = locate_service(args.spec)
    command = prepare_download(service, args.env)
    for text in revision_warnings(common.load(str(service.spec_path)).resolve(args.env)):
        common.note(f"warning: {text}")
    if args.dry_run:
        print(command.shell())
        return 0
    common.note(f"$ {command.shell()}")
    run_modal(command)
    return 0
