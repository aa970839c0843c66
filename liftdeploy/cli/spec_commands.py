"""validate, show, set, schema: reading and editing spec files."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from liftdeploy.cli import common

if TYPE_CHECKING:
    from liftdeploy.spec.specfile import Change


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate",
        help="check spec files (and every environment in them); exit 2 if any is invalid",
    )
    common.add_spec_argument(p, nargs="+")
    common.add_json_option(p)
    p.set_defaults(handler=validate)

    p = subparsers.add_parser("show", help="print the spec resolved for one environment, as YAML")
    common.add_spec_argument(p)
    common.add_env_option(p)
    common.add_json_option(p)
    p.set_defaults(handler=show)

    p = subparsers.add_parser(
        "set",
        help="change values in a spec file, keeping its comments and layout",
        description="Change values in a spec file. All assignments are applied together and the "
        "result is validated first: an invalid result leaves the file untouched.",
    )
    common.add_spec_argument(p)
    p.add_argument(
        "assignments",
        nargs="+",
        metavar="KEY=VALUE",
        help="dotted key and YAML value, e.g. runtime.min_containers=1 or "
        "environments.staging.gpu.type=H100 (missing keys are created)",
    )
    p.set_defaults(handler=set_command)

    p = subparsers.add_parser("schema", help="print the spec's JSON schema (for editor completion)")
    p.set_defaults(handler=schema)


def validate(args: argparse.Namespace) -> int:
    from liftdeploy.errors import SpecError
    from liftdeploy.spec.model import advisories

    results, failed = [], 0
    for value in args.spec:
        try:
            spec = common.load(value)
        except SpecError as exc:
            failed += 1
            results.append({"spec": value, "valid": False, "error": str(exc)})
            if not args.json:
                common.note(f"✗ {exc}")
            continue
        notes = sorted({n for env in spec.environments for n in advisories(spec.resolve(env))})
        results.append(
            {
                "spec": value,
                "valid": True,
                "environments": list(spec.environments),
                "warnings": notes,
            }
        )
        if not args.json:
            print(f"✓ {value}: {spec.name} ({', '.join(spec.environments)})")
            for text in notes:
                common.note(f"  warning: {text}")
    if args.json:
        common.print_json(results)
    return 2 if failed else 0


def show(args: argparse.Namespace) -> int:
    from liftdeploy.planner.report import planned_lifecycle

    spec = common.load(args.spec)
    resolved = spec.resolve(args.env)
    data = resolved.model_dump(mode="json")
    data["app_name"] = resolved.app_name
    data["gpu"]["tensor_parallel_size"] = resolved.gpu.tp
    timeouts = planned_lifecycle(resolved)
    data["runtime"]["startup_timeout_s"] = timeouts.startup_timeout_s
    data["runtime"]["exit_grace_period_s"] = timeouts.exit_grace_period_s
    data["storage"]["volumes"] = [v.model_dump(mode="json") for v in resolved.volumes]
    # What this environment does not have to itself: another environment reads the same object.
    data["shared_with_other_environments"] = spec.shared_resources(resolved.environment)
    if args.json:
        common.print_json(data)
    else:
        from liftdeploy.spec.specfile import dump_yaml

        print(dump_yaml(data), end="")
    return 0


def set_command(args: argparse.Namespace) -> int:
    import json

    from liftdeploy.spec.specfile import set_values

    path = common.spec_path(args.spec)
    changes = set_values(path, args.assignments)
    for change in changes:
        old, new = (json.dumps(v, default=str) for v in (change.old, change.new))
        why = " (named after the service)" if change.follows_name else ""
        print(f"{path}: {change.key}: {old} -> {new}{why}")
    if renamed := [c for c in changes if c.key == "name" and c.old and c.old != c.new]:
        _warn_what_modal_keeps(path, renamed[-1].old, [c for c in changes if c.follows_name])
    return 0


def _warn_what_modal_keeps(path: object, old_name: str, moved: list[Change]) -> None:
    """`set name=` changes the spec only: what Modal already holds keeps its old name."""
    print(
        f"warning: the deployed app {old_name} (and each environment's "
        f"{old_name}-ENV) keeps running under its old name; stop it with "
        f"`modal app stop {old_name}` once the renamed service serves",
        file=sys.stderr,
    )
    if not moved:
        return
    weights = [c for c in moved if c.key.endswith(".name") and str(c.old).endswith("-weights")]
    keep = (
        f"`liftdeploy set {path} {weights[0].key}={weights[0].old}`"
        if weights
        else f"`liftdeploy set {path} KEY=OLD_NAME`"
    )
    print(
        f"warning: existing Modal Volumes, Dicts and Secrets are not renamed: "
        f"{', '.join(str(c.old) for c in moved)} stay as they are; run `liftdeploy bootstrap "
        f"{path} --env ENV` to create the new names (and put the Secrets' keys in them), and "
        f"download the weights again (`liftdeploy download {path} --env ENV`) or keep the old "
        f"weights Volume by naming it: {keep}",
        file=sys.stderr,
    )


def schema(args: argparse.Namespace) -> int:
    from liftdeploy.spec.docs import schema_text

    print(schema_text(), end="")
    return 0
