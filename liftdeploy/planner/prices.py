"""Live GPU prices from `modal billing rates`, only when the user asks for them."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal, InvalidOperation

from liftdeploy.spec import catalog
from liftdeploy.errors import PlanError

RATES_TIMEOUT_S = 60
SECONDS_PER_HOUR = 3600


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
