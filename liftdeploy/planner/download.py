"""How long the weights download may run: the checkpoint's bytes at a conservative throughput.

The download is its own Modal function with its own time limit (never the request limit): a
480 GB checkpoint in one hour would need 134 MB/s sustained from the Hub. The limit assumes
DOWNLOAD_MB_PER_S, well under what Hub-to-Modal transfers with Xet usually reach, plus a fixed
allowance for listing and committing the Volume; each retry gets the whole limit again and
skips the files already complete.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from liftdeploy.errors import PlanError
from liftdeploy.planner.memory import weights_per_rank
from liftdeploy.spec.model import HOURS, MINUTES, MODAL_MAX_TIMEOUT_S

if TYPE_CHECKING:
    from liftdeploy.planner.arch import Architecture
    from liftdeploy.spec.model import ResolvedDeployment

DOWNLOAD_MB_PER_S = 50
"""Assumed sustained Hub throughput in MB/s (400 Mbit/s): conservative on purpose, since a
download cut off by its limit starts over on the next attempt."""
DOWNLOAD_OVERHEAD_S = 10 * MINUTES
"""Fixed allowance per attempt: listing the repository, small files, committing the Volume."""
MIN_DOWNLOAD_TIMEOUT_S = 30 * MINUTES
UNSIZED_DOWNLOAD_TIMEOUT_S = 2 * HOURS
"""The limit when the planner does not know the model's size (not in the catalog, no config)."""
DOWNLOAD_RETRIES = 3
"""Attempts after the first; snapshot_download skips files a failed attempt completed."""


@dataclass(frozen=True)
class DownloadEstimate:
    """The weights download of one environment: size, expected time and its limit."""

    checkpoint_bytes: float | None
    """Weight bytes of the whole model (every rank together); None when not sized."""
    timeout_s: int
    """The download function's time limit per attempt."""
    retries: int = DOWNLOAD_RETRIES
    throughput_mb_s: int = DOWNLOAD_MB_PER_S

    @property
    def expected_s(self) -> float | None:
        """Seconds at the assumed throughput, without the fixed allowance."""
        if self.checkpoint_bytes is None:
            return None
        return self.checkpoint_bytes / (self.throughput_mb_s * 1e6)

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "checkpoint_gb": None
            if self.checkpoint_bytes is None
            else round(self.checkpoint_bytes / 1e9, 1),
            "assumed_mb_per_s": self.throughput_mb_s,
            "expected_s": None if self.expected_s is None else round(self.expected_s),
            "timeout_s": self.timeout_s,
            "retries": self.retries,
        }


def estimate_download(arch: Architecture) -> DownloadEstimate:
    """Size the download from the planner's weight bytes of the unsharded checkpoint (its own
    dtype and quantization, not what vLLM may convert it to)."""
    checkpoint = weights_per_rank(arch, tp=1).total_bytes
    seconds = checkpoint / (DOWNLOAD_MB_PER_S * 1e6) + DOWNLOAD_OVERHEAD_S
    limit = min(MODAL_MAX_TIMEOUT_S, max(MIN_DOWNLOAD_TIMEOUT_S, math.ceil(seconds / 60) * 60))
    return DownloadEstimate(checkpoint_bytes=checkpoint, timeout_s=limit)


def download_estimate(resolved: ResolvedDeployment) -> DownloadEstimate:
    """The download of `resolved`'s model; a model the planner cannot size gets
    UNSIZED_DOWNLOAD_TIMEOUT_S rather than no limit."""
    from liftdeploy.planner.arch import load_architecture

    try:
        arch = load_architecture(resolved.model.id, resolved.model.revision)
    except PlanError:
        return UNSIZED_DOWNLOAD
    return estimate_download(arch)


UNSIZED_DOWNLOAD = DownloadEstimate(checkpoint_bytes=None, timeout_s=UNSIZED_DOWNLOAD_TIMEOUT_S)
"""The download of a model the planner cannot size: UNSIZED_DOWNLOAD_TIMEOUT_S rather than no
limit."""
