"""Modal's billing report, as liftdeploy reads it: fetched through modal's SDK, saved and replayed
from JSON, and split into each environment's hourly cost by the tags every rendered app carries.

`modal.Workspace.billing.report` (modal 1.6) returns one `modal.types.BillingReportItem` per
billed object and interval: its cost, its cost by resource (CPU, memory, GPU types) and the tags
asked for. A row belongs to an environment when its tags (`liftdeploy.render.tags`) name this
service and that environment; rows of untagged apps (deployed before the tags) are matched by
app name.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from liftdeploy.errors import OpsError
from liftdeploy.render.tags import ENVIRONMENT_TAG, SERVICE_TAG, TAG_NAMES
from liftdeploy.spec import catalog

if TYPE_CHECKING:
    from liftdeploy.spec.model import ModelDeployment


class BillingRow(Protocol):
    """What liftdeploy reads of a `modal.types.BillingReportItem`."""

    object_id: str
    description: str
    environment_name: str
    interval_start: datetime
    cost: Decimal
    cost_by_resource: dict[str, Decimal]
    tags: dict[str, str]


def fetch_report(start: datetime, end: datetime) -> list[Any]:
    """Modal's hourly billing report for [start, end), with liftdeploy's tags on each row."""
    import modal

    from liftdeploy.ops.modal_sdk import modal_call

    return modal_call(
        "reading Modal's billing report",
        lambda: modal.Workspace.from_context().billing.report(
            start=start,
            end=end,
            resolution="h",
            tag_names=list(TAG_NAMES),
        ),
    )


MAX_ROW_USD = Decimal(1_000_000)
"""Largest cost one report row may hold: an hour of a thousand 8-GPU containers costs far
less, so a larger figure is a garbled row, not a bill."""

_REPORT_FIX = (
    "pass the file `liftdeploy spend --save-report` or `modal billing report --json` wrote"
)


MAX_REPORT_BYTES = 64 * 1024**2
"""Largest billing report read: a row is about 450 bytes, and a busy month of hourly rows for
several apps with `--show-resources` passes the 1 MiB that bounds a spec."""


def load_report(path: Path) -> list[Any]:
    """A saved report as modal's own `BillingReportItem`s: JSON rows with its field names (as
    `spend --save-report` writes), or the output of `modal billing report --json`
    (`environment` for environment_name, `tags` as JSON text, with `--show-resources` one row
    per resource). Read through the one hardened loader (a regular file of bounded size); a
    row whose cost is not a dollar figure (NaN, Inf, negative, text) refuses the whole report:
    one bad row must not turn totals into $nan and silence the budget check."""
    from modal.types import BillingReportItem

    from liftdeploy.spec.specfile import read_json

    rows = read_json(path, max_bytes=MAX_REPORT_BYTES, what="billing report")
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise OpsError(f"{path}: a billing report is a JSON list of rows; {_REPORT_FIX}")
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for number, row in enumerate(rows, start=1):
        where = f"{path}: row {number}"
        missing = [name for name in ("object_id", "interval_start", "cost") if name not in row]
        if missing:
            raise OpsError(
                f"{where} lacks {', '.join(missing)}; each row needs object_id, "
                f"interval_start (ISO time) and cost; {_REPORT_FIX}"
            )
        key = (
            _text(row["object_id"], f"{where} object_id"),
            _text(row["interval_start"], f"{where} interval_start"),
        )
        try:
            start = utc(datetime.fromisoformat(key[1]))
        except ValueError:
            raise OpsError(
                f"{where} interval_start {_kind(key[1])} is not an ISO time such as "
                f"2026-11-01T10:00:00+00:00; {_REPORT_FIX}"
            ) from None
        where = f"{where} ({_kind(key[0])} at {key[1]})"
        item = merged.setdefault(
            key,
            {
                "object_id": key[0],
                "description": _text(row.get("description", ""), f"{where} description"),
                "environment_name": _text(
                    row.get("environment_name", row.get("environment", "")), f"{where} environment"
                ),
                "interval_start": start,
                "cost": Decimal(0),
                "cost_by_resource": {},
                "tags": _tags(row.get("tags"), where),
            },
        )
        cost = checked_cost(row["cost"], f"{where} cost")
        if "resource" in row:  # `modal billing report --show-resources`: one resource a row
            item["cost_by_resource"][_text(row["resource"], f"{where} resource")] = cost
            item["cost"] += cost
        else:
            item["cost"] = cost
            by_resource = row.get("cost_by_resource") or {}
            if not isinstance(by_resource, dict):
                raise OpsError(
                    f"{where} cost_by_resource is {_kind(by_resource)}, not a "
                    f"mapping of resource to cost; {_REPORT_FIX}"
                )
            item["cost_by_resource"] = {
                resource: checked_cost(value, f"{where} cost_by_resource[{_kind(resource)}]")
                for resource, value in by_resource.items()  # JSON keys are always text
            }
    return [BillingReportItem(**item) for item in merged.values()]


def checked_cost(value: Any, where: str) -> Decimal:
    """A report's dollar figure: a finite number from 0 to MAX_ROW_USD (given as a number or
    its text), else an OpsError naming `where` and the value."""
    number = None
    if isinstance(value, (str, int, float, Decimal)) and not isinstance(value, bool):
        try:
            number = Decimal(str(value).strip())
        except ArithmeticError:  # decimal.InvalidOperation: not a number at all
            pass
    if number is None or not number.is_finite() or not 0 <= number <= MAX_ROW_USD:
        raise OpsError(
            f"{where} is {_kind(value)}, not a dollar figure from 0 to "
            f"{MAX_ROW_USD:,}; the report is garbled, so nothing is summed: fetch "
            f"it again, or fix that row"
        )
    return number


def _kind(value: Any) -> str:
    """A value for a message: short scalars as written, containers by their type."""
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    from liftdeploy.spec.messages import shown

    return shown(value)


def _text(value: Any, where: str) -> str:
    """A field that must be text (a number is read as its text), else an OpsError."""
    if isinstance(value, (dict, list)) or value is None:
        raise OpsError(f"{where} is {_kind(value)}, not text; {_REPORT_FIX}")
    return str(value)


def save_report(items: Iterable[BillingRow], path: Path) -> None:
    """Write report rows with modal's field names, so `--report` can replay them."""
    rows = [
        {
            "object_id": item.object_id,
            "description": item.description,
            "environment_name": item.environment_name,
            "interval_start": item.interval_start.isoformat(),
            "cost": str(item.cost),
            "cost_by_resource": {k: str(v) for k, v in item.cost_by_resource.items()},
            "tags": dict(item.tags),
        }
        for item in items
    ]
    from liftdeploy.files import write_atomic

    write_atomic(path, json.dumps(rows, indent=1) + "\n")  # whole or not at all


def _tags(value: Any, where: str) -> dict[str, str]:
    """A row's tags: a mapping of names to text, or that mapping as JSON text."""
    tags = value
    if isinstance(value, str):  # `modal billing report --json` writes the tags as JSON text
        try:
            tags = json.loads(value) if value.strip() else {}
        except (ValueError, RecursionError):
            tags = value
    if not isinstance(tags or {}, dict):
        raise OpsError(
            f"{where} tags are {_kind(value)}, not a mapping of tag names to text; {_REPORT_FIX}"
        )
    return {key: _text(text, f"{where} tag {_kind(key)}") for key, text in (tags or {}).items()}


# --- matching rows to environments -------------------------------------------------------------


@dataclass
class Hourly:
    """One environment's bill, hour by hour (hour start -> dollars)."""

    total: dict[datetime, float] = field(default_factory=lambda: defaultdict(float))
    gpu: dict[datetime, float] = field(default_factory=lambda: defaultdict(float))
    matched_by_name: set[str] = field(default_factory=set)
    """App names of untagged rows counted for this environment."""


def split_by_environment(items: Iterable[BillingRow], spec: ModelDeployment) -> dict[str, Hourly]:
    """Each environment's hourly cost: rows tagged with this service and the environment, plus
    untagged rows of the environment's app (same app name and Modal environment)."""
    by_app = {}
    for env in spec.environments:
        resolved = spec.resolve(env)
        by_app[resolved.app_name] = (env, resolved.modal_environment)
    gpu_words = _gpu_words()
    found: dict[str, Hourly] = {env: Hourly() for env in spec.environments}
    for item in items:
        tags = item.tags
        if tags.get(SERVICE_TAG) == spec.name and tags.get(ENVIRONMENT_TAG) in found:
            env = tags[ENVIRONMENT_TAG]
        elif SERVICE_TAG not in tags and item.description in by_app:
            env, modal_env = by_app[item.description]
            if modal_env and item.environment_name != modal_env:
                continue
            found[env].matched_by_name.add(item.description)
        else:
            continue
        hour = hour_floor(utc(item.interval_start))
        # Rows from Modal are checked as saved ones are: a NaN would silence every verdict.
        where = f"the billing report's row {_kind(item.object_id)} at {hour.isoformat()}"
        cost = float(checked_cost(item.cost, f"{where}: cost"))
        by_resource = {
            resource: float(checked_cost(value, f"{where}: {_kind(resource)} cost"))
            for resource, value in item.cost_by_resource.items()
        }
        found[env].total[hour] += cost
        # A report without the per-resource breakdown is taken as all GPU: for a GPU service
        # the CPU and memory share is small, and the plan's figures can still be compared.
        found[env].gpu[hour] += (
            sum(
                value
                for resource, value in by_resource.items()
                if any(word in resource.lower() for word in gpu_words)
            )
            if by_resource
            else cost
        )
    return found


def _gpu_words() -> set[str]:
    """Lower-case words that mark a GPU resource in cost_by_resource ("GPU", or a GPU name)."""
    words = {"gpu"}
    for info in catalog.gpus().values():
        words |= {info.name.lower(), *(alias.lower() for alias in info.aliases)}
    return words


def utc(moment: datetime) -> datetime:
    """A naive time read as UTC (as modal does), an aware one converted to UTC."""
    return (
        moment.replace(tzinfo=timezone.utc)
        if moment.tzinfo is None
        else moment.astimezone(timezone.utc)
    )


def hour_floor(moment: datetime) -> datetime:
    """The start of the hour `moment` falls in: the key of an hourly interval."""
    return moment.replace(minute=0, second=0, microsecond=0)
