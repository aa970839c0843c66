"""`spend`: what a service really cost, per environment and day, held against the plan and budget.

The bill is Modal's billing report, split per environment by the apps' tags
(`liftdeploy.ops.billing`). It is read hour by hour, because the hours show what a day's total
hides: a container that never scaled down, or the max_containers cap reached. Beside each day
stand the plan's figures for the same hours (always-on floor and worst-case ceiling at the
plan's price) and the day's share of `budget.max_monthly_usd`; verdicts say when a day is over
budget or far above the plan and name the cause they can see. Real $ per million output tokens
divides the cost between two readings of vLLM's `generation_tokens` counter
(`liftdeploy.ops.tokens`) by the tokens counted between them.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from liftdeploy.errors import OpsError
from liftdeploy.ops.billing import BillingRow, Hourly, hour_floor, split_by_environment, utc
from liftdeploy.ops.tokens import TokenReading, tokens_between
from liftdeploy.planner.checks import Verdict
from liftdeploy.planner.report import gpu_hour_price

if TYPE_CHECKING:
    from liftdeploy.spec.model import ModelDeployment, ResolvedDeployment

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
FAR_ABOVE_PLAN = 2.0
"""A day costing more than this many times its always-on floor is far above the plan."""
CAP_SHARE = 0.95
"""An hour whose GPU cost reaches this share of max_containers x the container-hour price ran
at the cap."""
UP_ALL_DAY_HOURS = 20
"""Hours of a day with GPU cost from which a min_containers 0 environment never scaled down."""
PERIODS = ("today", "yesterday", "this-week", "last-week", "this-month", "last-month", "<N>d")


# --- the window --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpendWindow:
    """[start, end) in UTC, both on hour boundaries (Modal bills whole intervals)."""

    start: datetime
    end: datetime

    @property
    def live(self) -> bool:
        """Whether the window ends now (a fresh /metrics reading marks its end)."""
        return self.end >= hour_floor(_utcnow())


def window_for(
    period: str | None = None,
    since: str | None = None,
    until: str | None = None,
    now: datetime | None = None,
) -> SpendWindow:
    """The window of `--for PERIOD` or `--since DATE [--until DATE]` (default: this month),
    ending at the last whole hour before `now` unless the period ends earlier. Calendar periods
    are UTC days, the way Modal's daily intervals are aligned."""
    now = hour_floor(now or _utcnow())
    today = now.replace(hour=0)
    month = today.replace(day=1)
    if until is not None and since is None:
        raise OpsError("--until needs --since (the window's first day)")
    if since is not None:
        start = _parse_date(since, "--since")
        end = min(now, _parse_date(until, "--until")) if until else now
        if start >= end:
            end_text = f"--until {until}" if until else "now"
            raise OpsError(f"--since {since} is not before {end_text}; give an earlier --since")
        return SpendWindow(start, end)
    name = (period or "this-month").strip().lower().replace(" ", "-")
    monday = today - timedelta(days=today.weekday())
    last_month = (month - DAY).replace(day=1)
    fixed = {
        "today": (today, now),
        "yesterday": (today - DAY, today),
        "this-week": (monday, now),
        "last-week": (monday - 7 * DAY, monday),
        "this-month": (month, now),
        "last-month": (last_month, month),
    }
    if name in fixed:
        start, end = fixed[name]
    elif (days := re.fullmatch(r"(\d{1,3})d", name)) and int(days[1]) >= 1:
        start, end = today - (int(days[1]) - 1) * DAY, now
    else:
        raise OpsError(
            f"--for {period!r} is not a period; use one of {', '.join(PERIODS)} (e.g. --for 7d)"
        )
    if end <= start:
        raise OpsError(f"--for {period}: no whole hour has passed yet in it; try --for yesterday")
    return SpendWindow(start, end)


def _parse_date(text: str, option: str) -> datetime:
    try:
        return hour_floor(utc(datetime.fromisoformat(text)))
    except ValueError:
        raise OpsError(f"{option} {text!r} is not a date; write YYYY-MM-DD (UTC)") from None


# --- the comparison ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DaySpend:
    """One environment's day: the bill, the plan for the same hours, the budget's share."""

    day: date
    hours: int
    """Hours of the day inside the window (24 except at its edges)."""
    cost_usd: float
    gpu_usd: float
    plan_always_on_usd: float
    """min_containers for these hours at the plan's price."""
    plan_worst_case_usd: float | None
    """max_containers for these hours at the plan's price; None without max_containers."""
    budget_usd: float | None
    """The day's share of budget.max_monthly_usd (a month's budget over its days)."""
    container_hours: float
    """GPU cost divided by the plan's container-hour price: what ran, as the plan prices it."""
    busy_hours: int
    """Hours with GPU cost: a container was up."""
    hours_at_cap: int
    """Hours whose GPU cost reached max_containers containers."""
    verdicts: list[Verdict]

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "hours": self.hours,
            "cost_usd": _money(self.cost_usd),
            "gpu_usd": _money(self.gpu_usd),
            "other_usd": _money(self.cost_usd - self.gpu_usd),
            "plan_always_on_usd": _money(self.plan_always_on_usd),
            "plan_worst_case_usd": _money(self.plan_worst_case_usd),
            "budget_usd": _money(self.budget_usd),
            "container_hours": round(self.container_hours, 2),
            "busy_hours": self.busy_hours,
            "hours_at_cap": self.hours_at_cap,
            "verdicts": [v.to_dict() for v in self.verdicts],
        }


@dataclass(frozen=True)
class MonthToDate:
    """The month the window ends in: spent so far, its share of the budget, the projection."""

    month: str
    cost_usd: float
    hours: int
    """Hours of the month the report covers."""
    budget_usd: float | None
    projected_usd: float
    """Month-to-date cost scaled to the whole month at the same hourly rate."""
    verdicts: list[Verdict]

    def to_dict(self) -> dict[str, Any]:
        share = None if not self.budget_usd else round(self.cost_usd / self.budget_usd, 4)
        return {
            "month": self.month,
            "cost_usd": _money(self.cost_usd),
            "hours": self.hours,
            "budget_usd": _money(self.budget_usd),
            "budget_share": share,
            "projected_usd": _money(self.projected_usd),
            "verdicts": [v.to_dict() for v in self.verdicts],
        }


@dataclass(frozen=True)
class TokenCost:
    """Real dollars per million output tokens between two counter readings."""

    start: TokenReading | None = None
    end: TokenReading | None = None
    output_tokens: float | None = None
    cost_usd: float | None = None
    plan_usd_per_million: float | None = None
    """The plan's figure at its speed bound (a floor: real traffic is rarely a full batch)."""
    reason: str | None = None
    """Why there is no real figure (no readings yet, service unreachable...)."""

    @property
    def usd_per_million(self) -> float | None:
        if not self.output_tokens or self.cost_usd is None:
            return None
        return self.cost_usd / self.output_tokens * 1e6

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.to_dict() if self.start else None,
            "end": self.end.to_dict() if self.end else None,
            "output_tokens": self.output_tokens,
            "cost_usd": _money(self.cost_usd),
            "usd_per_million_output_tokens": _money(self.usd_per_million),
            "plan_usd_per_million_output_tokens": _money(self.plan_usd_per_million),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class EnvironmentSpend:
    environment: str
    app_name: str
    container_hour_usd: float
    price_source: str
    min_containers: int
    max_containers: int | None
    monthly_budget_usd: float | None
    days: list[DaySpend]
    month: MonthToDate
    tokens: TokenCost
    matched_by_name: list[str]

    @property
    def cost_usd(self) -> float:
        return sum(d.cost_usd for d in self.days)

    @property
    def verdicts(self) -> list[Verdict]:
        return [v for d in self.days for v in d.verdicts] + self.month.verdicts

    def to_dict(self) -> dict[str, Any]:
        worst = [d.plan_worst_case_usd for d in self.days if d.plan_worst_case_usd is not None]
        return {
            "environment": self.environment,
            "app_name": self.app_name,
            "container_hour_usd": self.container_hour_usd,
            "price_source": self.price_source,
            "min_containers": self.min_containers,
            "max_containers": self.max_containers,
            "monthly_budget_usd": self.monthly_budget_usd,
            "days": [d.to_dict() for d in self.days],
            "total": {
                "cost_usd": _money(self.cost_usd),
                "gpu_usd": _money(sum(d.gpu_usd for d in self.days)),
                "plan_always_on_usd": _money(sum(d.plan_always_on_usd for d in self.days)),
                "plan_worst_case_usd": _money(sum(worst)) if self.max_containers else None,
            },
            "month": self.month.to_dict(),
            "tokens": self.tokens.to_dict(),
            "matched_by_app_name": self.matched_by_name,
        }


@dataclass(frozen=True)
class SpendReport:
    service: str
    window: SpendWindow
    source: str
    environments: list[EnvironmentSpend]

    @property
    def over_budget(self) -> bool:
        return any(v.level == "error" for e in self.environments for v in e.verdicts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "window": {"start": self.window.start.isoformat(), "end": self.window.end.isoformat()},
            "source": self.source,
            "over_budget": self.over_budget,
            "environments": [e.to_dict() for e in self.environments],
        }


def report_span(window: SpendWindow) -> tuple[datetime, datetime]:
    """What to ask Modal for: the window, extended back to the start of the month it ends in
    (for the month-to-date figures)."""
    month_start = (window.end - HOUR).replace(day=1, hour=0)
    return min(window.start, month_start), window.end


def spend_report(
    spec: ModelDeployment,
    environments: list[str],
    items: Iterable[BillingRow],
    window: SpendWindow,
    *,
    source: str,
    readings: dict[str, list[TokenReading]] | None = None,
    token_notes: dict[str, str] | None = None,
) -> SpendReport:
    """Hold the report rows against the plan and budget of each environment.

    `readings` are each environment's token-counter readings (oldest first); `token_notes` say
    why an environment has none to use.
    """
    hourly = split_by_environment(items, spec)
    result = []
    for env in environments:
        resolved = spec.resolve(env)
        bill = hourly[env]
        days = [_day(resolved, bill, day, window) for day in _days(window)]
        result.append(
            EnvironmentSpend(
                environment=env,
                app_name=resolved.app_name,
                container_hour_usd=resolved.container_hour_usd(),
                price_source=gpu_hour_price(resolved)[1],
                min_containers=resolved.runtime.min_containers,
                max_containers=resolved.runtime.max_containers,
                monthly_budget_usd=resolved.budget.max_monthly_usd,
                days=days,
                month=_month_to_date(resolved, bill, window),
                tokens=token_cost(
                    resolved,
                    bill,
                    (readings or {}).get(env, []),
                    window,
                    note=(token_notes or {}).get(env),
                ),
                matched_by_name=sorted(bill.matched_by_name),
            )
        )
    return SpendReport(spec.name, window, source, result)


def _days(window: SpendWindow) -> list[date]:
    first, last = window.start.date(), (window.end - HOUR).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _hours_in(day: date, window: SpendWindow) -> list[datetime]:
    start = max(window.start, datetime(day.year, day.month, day.day, tzinfo=timezone.utc))
    end = min(window.end, datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + DAY)
    return [start + i * HOUR for i in range(int((end - start) / HOUR))]


def _day(resolved: ResolvedDeployment, bill: Hourly, day: date, window: SpendWindow) -> DaySpend:
    hours = _hours_in(day, window)
    price = resolved.container_hour_usd()
    runtime = resolved.runtime
    cost = sum(bill.total.get(h, 0.0) for h in hours)
    gpu = sum(bill.gpu.get(h, 0.0) for h in hours)
    cap = runtime.max_containers
    at_cap = (
        0 if cap is None else sum(bill.gpu.get(h, 0.0) >= CAP_SHARE * cap * price for h in hours)
    )
    limit = resolved.budget.max_monthly_usd
    budget = (
        None
        if limit is None
        else limit / calendar.monthrange(day.year, day.month)[1] * len(hours) / 24
    )
    figures = DaySpend(
        day=day,
        hours=len(hours),
        cost_usd=cost,
        gpu_usd=gpu,
        plan_always_on_usd=runtime.min_containers * price * len(hours),
        plan_worst_case_usd=None if cap is None else cap * price * len(hours),
        budget_usd=budget,
        container_hours=gpu / price,
        busy_hours=sum(bill.gpu.get(h, 0.0) > 0 for h in hours),
        hours_at_cap=at_cap,
        verdicts=[],
    )
    figures.verdicts.extend(day_verdicts(resolved, figures))
    return figures


def day_verdicts(resolved: ResolvedDeployment, d: DaySpend) -> list[Verdict]:
    """Over its budget share (error) or far above the plan (warning), with the visible cause."""
    found = []
    cause, fix = _likely_cause(resolved, d)
    when = f"{d.day.isoformat()} {resolved.environment}"
    if d.budget_usd is not None and d.cost_usd > d.budget_usd:
        found.append(
            Verdict(
                "error",
                f"{when}: over budget, ${d.cost_usd:,.2f} against its ${d.budget_usd:,.2f} share of "
                f"budget.max_monthly_usd ${resolved.budget.max_monthly_usd:,.0f}; {cause}",
                fix,
            )
        )
    # The plan prices GPUs only, so its figures are held against the GPU cost.
    worst = d.plan_worst_case_usd
    if worst is not None and d.gpu_usd > worst * 1.05:
        found.append(
            Verdict(
                "warning",
                f"{when}: far above the plan, GPUs cost ${d.gpu_usd:,.2f}, more than its worst case "
                f"${worst:,.2f} (max_containers {resolved.runtime.max_containers} all day at "
                f"${resolved.container_hour_usd():.2f}/h)",
                "the real price is above the plan's (`liftdeploy plan --live-prices`), or the app "
                "ran with other settings than the spec (`liftdeploy status`, `liftdeploy check`)",
            )
        )
    elif d.plan_always_on_usd and d.gpu_usd > FAR_ABOVE_PLAN * d.plan_always_on_usd:
        found.append(
            Verdict(
                "warning",
                f"{when}: far above the plan, GPUs cost ${d.gpu_usd:,.2f}, "
                f"{d.gpu_usd / d.plan_always_on_usd:.1f}x the always-on "
                f"${d.plan_always_on_usd:,.2f}; {cause}",
                fix,
            )
        )
    elif d.plan_always_on_usd and d.hours == 24 and d.gpu_usd < d.plan_always_on_usd / 2:
        found.append(
            Verdict(
                "warning",
                f"{when}: GPUs cost ${d.gpu_usd:,.2f}, under half the always-on "
                f"${d.plan_always_on_usd:,.2f} the plan expects: the app was not running with "
                f"min_containers {resolved.runtime.min_containers}",
                "check that it is deployed (`liftdeploy status`); Modal's report can also lag a few "
                "hours behind",
            )
        )
    return found


def _likely_cause(resolved: ResolvedDeployment, d: DaySpend) -> tuple[str, str]:
    """The cause of a costly day that the hourly bill shows, and what to change."""
    runtime = resolved.runtime
    # With one container allowed, every busy hour is "at the cap": it says nothing there.
    if d.hours_at_cap and (runtime.max_containers or 0) > max(1, runtime.min_containers):
        return (
            f"the max_containers cap ({runtime.max_containers}) was reached in {d.hours_at_cap} "
            f"of {d.hours} hours: demand kept every allowed container busy",
            "lower runtime.max_containers to cap the bill (callers then wait or get 429), or "
            "raise the budget if the traffic is wanted",
        )
    if runtime.min_containers and d.plan_always_on_usd >= d.gpu_usd / 2:
        return (
            f"containers kept warm: min_containers {runtime.min_containers} costs "
            f"${d.plan_always_on_usd:,.2f} of it",
            "lower runtime.min_containers (cold starts return) or raise the budget",
        )
    if d.busy_hours >= UP_ALL_DAY_HOURS:
        return (
            f"a container stayed up {d.busy_hours} of {d.hours} hours (≈{d.container_hours:.0f} "
            f"container-hours): requests arrive more often than scaledown_window_s "
            f"{runtime.scaledown_window_s} lets it stop",
            "shorten runtime.scaledown_window_s, or find the caller that keeps it warm "
            "(`liftdeploy logs`)",
        )
    return (
        f"traffic: ≈{d.container_hours:.1f} container-hours in {d.busy_hours} busy hours",
        "shorten runtime.scaledown_window_s (each burst keeps a container up that long "
        "after it), lower runtime.max_containers, or raise the budget",
    )


def _month_to_date(resolved: ResolvedDeployment, bill: Hourly, window: SpendWindow) -> MonthToDate:
    end = window.end
    start = (end - HOUR).replace(day=1, hour=0)
    hours = int((end - start) / HOUR)
    cost = sum(v for hour, v in bill.total.items() if start <= hour < end)
    month_hours = calendar.monthrange(start.year, start.month)[1] * 24
    projected = cost / hours * month_hours if hours else 0.0
    limit = resolved.budget.max_monthly_usd
    found = []
    month = start.strftime("%Y-%m")
    if limit is not None and cost > limit:
        found.append(
            Verdict(
                "error",
                f"{month} {resolved.environment}: over budget, ${cost:,.2f} spent of "
                f"budget.max_monthly_usd ${limit:,.0f}",
                "scale down now (runtime.min_containers 0, a lower max_containers) or raise the budget",
            )
        )
    elif limit is not None and projected > limit:
        found.append(
            Verdict(
                "warning",
                f"{month} {resolved.environment}: on course for ${projected:,.0f} at month end, "
                f"above budget.max_monthly_usd ${limit:,.0f} (${cost:,.2f} so far)",
                "lower runtime.min_containers, max_containers or scaledown_window_s, or raise the "
                "budget",
            )
        )
    return MonthToDate(month, cost, hours, limit, projected, found)


# --- tokens ------------------------------------------------------------------------------------


def token_cost(
    resolved: ResolvedDeployment,
    bill: Hourly,
    readings: list[TokenReading],
    window: SpendWindow,
    *,
    note: str | None = None,
) -> TokenCost:
    """$ per million output tokens between the first and last readings inside the window; the
    cost is the bill of the whole hours between them."""
    plan_figure = _plan_usd_per_million(resolved)
    inside = sorted(
        (r for r in readings if window.start <= r.at <= window.end + HOUR), key=lambda r: r.at
    )
    if len(inside) < 2:
        reason = note or (
            f"{len(inside)} token-counter reading{'s' if len(inside) != 1 else ''} in the "
            f"window; each `spend` run that reaches the service records one, and two are needed"
        )
        return TokenCost(
            start=inside[0] if inside else None, plan_usd_per_million=plan_figure, reason=reason
        )
    first, last = inside[0], inside[-1]
    hours = [h for h in bill.total if hour_floor(first.at) <= h < hour_floor(last.at)]
    cost = sum(bill.total[h] for h in hours)
    tokens = tokens_between(inside)
    reason = None if tokens else "no output tokens were generated between the readings"
    return TokenCost(first, last, tokens, cost, plan_figure, reason)


def _plan_usd_per_million(resolved: ResolvedDeployment) -> float | None:
    from liftdeploy.errors import PlanError
    from liftdeploy.planner.report import plan

    try:
        return plan(resolved).cost.usd_per_million_output_tokens
    except PlanError:
        return None


# --- text ----------------------------------------------------------------------------------------

_MARKS = {"ok": "✓", "warning": "!", "error": "✗"}


def format_spend(report: SpendReport) -> str:
    """The report as a table per environment, then its verdicts."""
    w = report.window
    lines = [
        f"{report.service}: spend {w.start:%Y-%m-%d %H:%M} .. {w.end:%Y-%m-%d %H:%M} UTC, "
        f"from {report.source}"
    ]
    for e in report.environments:
        cap = "unbounded" if e.max_containers is None else str(e.max_containers)
        budget = (
            "no budget"
            if e.monthly_budget_usd is None
            else f"budget ${e.monthly_budget_usd:,.0f}/month"
        )
        lines += [
            "",
            f"{e.environment} ({e.app_name}): ${e.container_hour_usd:.2f}/container-hour from "
            f"{e.price_source}; min_containers {e.min_containers}, max_containers {cap}; {budget}",
            f"  {'day':<10}  {'GPU':>9}  {'other':>8}  {'total':>9}  {'plan: always-on':>15}"
            f"  {'worst case':>10}  {'budget/day':>10}  hours up",
        ]
        for d in e.days:
            mark = max(
                (v.level for v in d.verdicts), key=["ok", "warning", "error"].index, default="ok"
            )
            lines.append(
                f"  {d.day.isoformat():<10}  {_usd(d.gpu_usd):>9}"
                f"  {_usd(d.cost_usd - d.gpu_usd):>8}"
                f"  {_usd(d.cost_usd):>9}  {_usd(d.plan_always_on_usd):>15}"
                f"  {_usd(d.plan_worst_case_usd):>10}  {_usd(d.budget_usd):>10}"
                f"  {d.busy_hours:>2}/{d.hours:<2} {_MARKS[mark] if d.verdicts else ''}".rstrip()
            )
        m = e.month
        share = f", {m.cost_usd / m.budget_usd:.0%} of ${m.budget_usd:,.0f}" if m.budget_usd else ""
        lines.append(
            f"  total {_usd(e.cost_usd)} in the window; {m.month} so far "
            f"{_usd(m.cost_usd)}{share}, projected {_usd(m.projected_usd)} at month end"
        )
        lines.append("  tokens  " + _format_tokens(e.tokens))
        if e.matched_by_name:
            lines.append(
                f"  untagged rows counted by app name: {', '.join(e.matched_by_name)} "
                f"(deployed before liftdeploy tagged apps; redeploy to tag them)"
            )
        for v in e.verdicts:
            lines.append(f"  {_MARKS[v.level]} {v.level}: {v.message}")
            if v.fix:
                lines.append(f"      fix: {v.fix}")
    return "\n".join(lines)


def _format_tokens(t: TokenCost) -> str:
    plan = "n/a" if t.plan_usd_per_million is None else f"${t.plan_usd_per_million:,.2f}"
    if t.usd_per_million is None:
        return f"real $/M output tokens: n/a ({t.reason}); plan at its speed bound {plan}"
    assert t.start and t.end and t.output_tokens
    return (
        f"${t.usd_per_million:,.2f} per M output tokens ({t.output_tokens:,.0f} tokens, "
        f"${t.cost_usd:,.2f}, {t.start.at:%m-%d %H:%M} .. {t.end.at:%m-%d %H:%M}); plan at "
        f"its speed bound {plan}"
    )


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _money(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)
