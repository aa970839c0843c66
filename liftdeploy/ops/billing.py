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
            start=start, end=end, resolution="h", tag_names=list(TAG_NAMES),
        ),
    )


def load_report(path: Path) -> list[Any]:
    """A saved report as modal's own `BillingReportItem`s: JSON rows with its field names (as
    `spend --save-report` writes), or the output of `modal billing report --json`
    (`environment` for environment_name, `tags` as JSON text, with `--show-resources` one row
    per resource)."""
    from modal.types import BillingReportItem

    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise OpsError(f"{path}: cannot read a billing report ({exc}); pass the file "
                       f"`liftdeploy spend --save-report` or `modal billing report --json` "
                       f"wrote") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise OpsError(f"{path}: a billing report is a JSON list of rows; pass the file "
                       f"`liftdeploy spend --save-report` or `modal billing report --json` wrote")
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        for row in rows:
            key = (str(row["object_id"]), str(row["interval_start"]))
            item = merged.setdefault(key, {
                "object_id": key[0],
                "description": str(row.get("description", "")),
                "environment_name": str(row.get("environment_name", row.get("environment", ""))),
                "interval_start": utc(datetime.fromisoformat(key[1])),
                "cost": Decimal(0),
                "cost_by_resource": {},
                "tags": _tags(row.get("tags")),
            })
            if "resource" in row:  # `modal billing report --show-resources`: one resource a row
                item["cost_by_resource"][str(row["resource"])] = Decimal(str(row["cost"]))
                item["cost"] += Decimal(str(row["cost"]))
            else:
                item["cost"] = Decimal(str(row["cost"]))
                item["cost_by_resource"] = {
                    str(k): Decimal(str(v)) for k, v in (row.get("cost_by_resource") or {}).items()
                }
    except (KeyError, ValueError, ArithmeticError, TypeError) as exc:
        raise OpsError(f"{path}: a row lacks or garbles {exc}; each row needs object_id, "
                       f"interval_start (ISO time) and cost") from None
    return [BillingReportItem(**item) for item in merged.values()]


def save_report(items: Iterable[BillingRow], path: Path) -> None:
    """Write report rows with modal's field names, so `--report` can replay them."""
    rows = [{
        "object_id": item.object_id, "description": item.description,
        "environment_name": item.environment_name,
        "interval_start": item.interval_start.isoformat(), "cost": str(item.cost),
        "cost_by_resource": {k: str(v) for k, v in item.cost_by_resource.items()},
        "tags": dict(item.tags),
    } for item in items]
    path.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


def _tags(value: Any) -> dict[str, str]:
    if isinstance(value, str):  # `modal billing report --json` writes the tags as JSON text
        value = json.loads(value) if value.strip() else {}
    return {str(k): str(v) for k, v in (value or {}).items()}


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
        found[env].total[hour] += float(item.cost)
        # A report without the per-resource breakdown is taken as all GPU: for a GPU service
        # the CPU and memory share is small, and the plan's figures can still be compared.
        found[env].gpu[hour] += sum(
            float(cost) for resource, cost in item.cost_by_resource.items()
            if any(word in resource.lower() for word in gpu_words)
        ) if item.cost_by_resource else float(item.cost)
    return found


def _gpu_words() -> set[str]:
    """Lower-case words that mark a GPU resource in cost_by_resource ("GPU", or a GPU name)."""
    words = {"gpu"}
    for info in catalog.gpus().values():
        words |= {info.name.lower(), *(alias.lower() for alias in info.aliases)}
    return words


def utc(moment: datetime) -> datetime:
    """A naive time read as UTC (as modal does), an aware one converted to UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None \
        else moment.astimezone(timezone.utc)


def hour_floor(moment: datetime) -> datetime:
    """The start of the hour `moment` falls in: the key of an hourly interval."""
    return moment.replace(minute=0, second=0, microsecond=0)
