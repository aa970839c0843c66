"""`liftdeploy schema-check`: will the server's grammar backend accept these JSON schemas?"""

from __future__ import annotations

import argparse
from pathlib import Path

from liftdeploy.cli.common import add_json_option, print_json

BACKEND_CHOICES = ("xgrammar", "guidance", "all")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "schema-check",
        help="compile JSON schemas with the grammar backends' own libraries",
        description=(
            "Compile each JSON schema the way the service does before it accepts a request "
            "(xgrammar, llguidance) and say per backend: supported, or the unsupported feature. "
            "For guidance it says how: exactly (maybe after an exact rewrite), or relaxed "
            "(with the keywords the service's guard enforces, resampling answers that break "
            "them), or refused with the change that would make the schema servable. "
            "A $ref outside the schema (a URL or another file) is unsupported by every backend: "
            "the service never fetches it. "
            "Needs the optional extra: pip install 'liftdeploy[schemacheck]'. "
            "Exit status 1 when a schema is unsupported by a checked backend."
        ),
    )
    parser.add_argument("schemas", nargs="+", metavar="SCHEMA.json", help="JSON schema files")
    parser.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="all",
        help="backend to check against (default: all)",
    )
    add_json_option(parser)
    parser.set_defaults(handler=run_schema_check)


def run_schema_check(args: argparse.Namespace) -> int:
    from liftdeploy.client.schemacheck import BACKENDS, check_schema
    from liftdeploy.spec.specfile import read_json

    backends = BACKENDS if args.backend == "all" else (args.backend,)
    report = []
    for name in args.schemas:
        path = Path(name)
        schema = read_json(path)
        report.append(
            {
                "schema": str(path),
                "backends": [check_schema(schema, backend).to_dict() for backend in backends],
            }
        )
    if args.json:
        print_json(report)
    else:
        for entry in report:
            print(entry["schema"])
            for result in entry["backends"]:
                print(f"  {result['backend']:<9} {result['summary']}")
    all_supported = all(r["supported"] for entry in report for r in entry["backends"])
    return 0 if all_supported else 1
