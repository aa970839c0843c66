"""vLLM's generated-token counter: read from /metrics, counted between readings, kept in a log.

Modal routes a /metrics request to one container, and a container's counter starts at zero, so
readings count the tokens of the containers they reach; a reading lower than the one before
means a new container, whose whole count is new.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liftdeploy.errors import OpsError
from liftdeploy.ops.billing import utc
from liftdeploy.runtime.monitor import checked_count
from liftdeploy.spec.specfile import read_text

if TYPE_CHECKING:
    from liftdeploy.client.api import Client

METRIC = "vllm:generation_tokens_total"
"""vLLM's counter of generated (output) tokens, summed over its label sets."""


@dataclass(frozen=True)
class TokenReading:
    """vLLM's generation-token counter at one moment, summed over the label sets it reports."""

    at: datetime
    generation_tokens: float

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "generation_tokens": self.generation_tokens}


def generation_tokens(metrics_text: str) -> float | None:
    """The sum of vLLM's generation-token counter over its label sets (engines, models), from
    Prometheus text; None when the text has no such counter."""
    total, seen = 0.0, False
    for line in metrics_text.splitlines():
        if not line.startswith(METRIC):
            continue
        rest = line[len(METRIC) :]
        if rest[:1] == "{":
            rest = rest[rest.rindex("}") + 1 :]
        elif rest[:1] not in (" ", "\t"):
            continue  # another metric sharing the prefix
        try:
            value = float(rest.split()[0])
        except (IndexError, ValueError):
            raise OpsError(
                f"/metrics line {line[:80]!r} has no value; is this vLLM's Prometheus text?"
            ) from None
        if checked_count(value) is None:  # NaN, Inf, negative: $nan per million tokens
            raise OpsError(
                f"/metrics line {line[:80]!r} is not a token count; is this vLLM's Prometheus text?"
            )
        total += value
        seen = True
    return total if seen else None


def read_tokens(client: Client, *, now: datetime | None = None) -> TokenReading:
    """Read the counter from the service's /metrics."""
    text = client.metrics()
    value = generation_tokens(text)
    if value is None:
        raise OpsError(f"{client.base_url}/metrics has no {METRIC}; is this a vLLM server?")
    return TokenReading(now or datetime.now(timezone.utc), value)


def tokens_between(readings: list[TokenReading]) -> float:
    """Tokens generated across consecutive readings. A lower value than the one before means
    the counter restarted (a new container), so its whole value is new."""
    total = 0.0
    for before, after in zip(readings, readings[1:]):
        grown = after.generation_tokens - before.generation_tokens
        total += grown if grown >= 0 else after.generation_tokens
    return total


class ReadingLog:
    """Token-counter readings of one app, one JSON line each, kept between runs."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_app(cls, app_name: str, folder: Path | None = None) -> ReadingLog:
        """`<folder>/<app>.jsonl`; the folder defaults to liftdeploy's state directory
        ($XDG_STATE_HOME/liftdeploy/token-readings, else ~/.local/state/...)."""
        if folder is None:
            state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
            folder = Path(state) / "liftdeploy" / "token-readings"
        return cls(folder / f"{app_name}.jsonl")

    def load(self) -> list[TokenReading]:
        if not os.path.lexists(self.path):
            return []
        lines = read_text(self.path).splitlines()  # the hardened loader: no FIFO, no device
        readings = []
        for number, line in enumerate(lines, 1):
            try:
                data = json.loads(line)
                count = checked_count(data["generation_tokens"])
                if count is None:
                    raise ValueError(data["generation_tokens"])
                readings.append(TokenReading(utc(datetime.fromisoformat(data["at"])), count))
            except (ValueError, KeyError, TypeError, RecursionError):
                raise OpsError(
                    f"{self.path}:{number} is not a token reading; remove the line "
                    f'(each line is {{"at": ISO time, "generation_tokens": N}})'
                ) from None
        return sorted(readings, key=lambda r: r.at)

    def append(self, reading: TokenReading) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(reading.to_dict()) + "\n")
        except OSError as exc:
            raise OpsError(
                f"cannot record the token reading in {self.path} ({exc}); pass "
                f"--readings with a writable file"
            ) from None
