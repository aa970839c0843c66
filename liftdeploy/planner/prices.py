"""Live GPU prices from `modal billing rates`, only when the user asks for them; what the
observability features cost beside the server."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from liftdeploy.errors import PlanError
from liftdeploy.spec import catalog
from liftdeploy.spec.model import HOURS_PER_MONTH

if TYPE_CHECKING:
    from liftdeploy.spec.model import ObservabilitySection

RATES_TIMEOUT_S = 60
SECONDS_PER_HOUR = 3600
# One alerts check, start to finish: a slim CPU container starts, reads Modal's counts (and
# maybe vLLM's /metrics), posts to the webhook at most twice. An estimate, on the high side.
MONITOR_RUN_S = 15


def live_gpu_hour_usd(gpu_type: str) -> float:
    """Price of one GPU-hour of `gpu_type` from `modal billing rates --json` (needs a login)."""
    command = [sys.executable, "-m", "modal", "billing", "rates", "--json"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=RATES_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PlanError(
            f"`modal billing rates` did not run ({exc}); pass --price instead"
        ) from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PlanError(
            f"`modal billing rates` failed: {detail[0]}; log in with `modal token new` or pass "
            f"--price USD_PER_GPU_HOUR"
        )
    try:
        rates = json.loads(done.stdout)
    except ValueError:
        raise PlanError(
            "`modal billing rates --json` printed no JSON; pass --price instead"
        ) from None
    return _gpu_rate(rates, gpu_type)


def _gpu_rate(rates: dict[str, str], gpu_type: str) -> float:
    """Find the rate whose key names this GPU; Modal quotes per second, so scale to per hour."""
    names = {gpu_type.lower(), *(a.lower() for a in catalog.gpu(gpu_type).aliases)}
    for key, value in rates.items():
        label = key.lower().replace("_", "-").split(".")[-1]
        if label in names or label.removeprefix("gpu-") in names:
            try:
                rate = float(Decimal(str(value)))
            except InvalidOperation:
                continue
            # Modal lists per-second rates (an H100 is about $0.0011/s); an hourly figure is > 0.1.
            return rate * SECONDS_PER_HOUR if rate < 0.1 else rate
    raise PlanError(
        f"`modal billing rates` lists no rate for {gpu_type} (keys: {', '.join(sorted(rates))}); "
        f"pass --price instead"
    )


def monitor_monthly_usd(check_every_s: int) -> float:
    """What the alerts monitor costs a month: the template registers it with no cpu=/memory=,
    so Modal bills its default request; each check is billed for its run plus the scaledown
    window it then idles through, or the whole period when checks come sooner than that."""
    rates = catalog.cpu_memory_prices()
    usd_per_s = (
        rates["default_cpu_cores"] * rates["core_second_usd"]
        + rates["default_memory_mib"] / 1024 * rates["gib_second_usd"]
    )
    checks = HOURS_PER_MONTH * SECONDS_PER_HOUR / check_every_s
    return checks * _monitor_billed_s(check_every_s) * usd_per_s


def _monitor_billed_s(check_every_s: int) -> int:
    """Seconds billed per check: the run, then the idle scaledown window (capped by the period:
    a container checked again before it idles out never stops)."""
    idle_s = catalog.cpu_memory_prices()["default_scaledown_window_s"]
    return min(check_every_s, MONITOR_RUN_S + idle_s)


def observability_costs(observability: ObservabilitySection) -> list[str]:
    """What each observability feature the spec turns on will cost, one line each (for `plan`)."""
    lines = []
    if observability.sentry_dsn_secret:
        lines.append(
            "cost of errors: billed by Sentry on its own plan (one event per failed "
            "start-up); nothing on Modal"
        )
    if observability.otlp_traces_endpoint:
        lines.append(
            "cost of traces: billed by the collector's provider for the spans it "
            "receives (one trace per request); vLLM sends them from the server "
            "container, so nothing extra on Modal"
        )
    if alerts := observability.alerts:
        rates = catalog.cpu_memory_prices()
        lines.append(
            f"cost of alerts: about ${monitor_monthly_usd(alerts.check_every_s):,.2f}/month on "
            f"Modal: a CPU-only container ({rates['default_cpu_cores']:g} core, "
            f"{rates['default_memory_mib']} MiB, Modal's default request) runs every "
            f"{alerts.check_every_s} s for about {MONITOR_RUN_S} s and is billed about "
            f"{_monitor_billed_s(alerts.check_every_s)} s a check with its idle scaledown window "
            f"(CPU ${_plain(rates['core_second_usd'])}/core-s, memory "
            f"${_plain(rates['gib_second_usd'])}/GiB-s: "
            f"{rates['source']}, {rates['date']}); the webhook's service bills its own way"
        )
    return lines


def _plain(price: float) -> str:
    """A per-second price as Modal prints it (0.0000131, not 1.31e-05)."""
    return format(Decimal(str(price)), "f")
