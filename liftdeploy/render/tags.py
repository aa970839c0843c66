"""The tags every rendered app carries, so that Modal's billing report splits cost per service,
environment and liftdeploy release (`liftdeploy spend` reads them back)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from liftdeploy import __version__

if TYPE_CHECKING:
    from liftdeploy.spec.model import ResolvedDeployment

SERVICE_TAG = "liftdeploy-service"
ENVIRONMENT_TAG = "liftdeploy-environment"
VERSION_TAG = "liftdeploy-version"
TAG_NAMES = (SERVICE_TAG, ENVIRONMENT_TAG, VERSION_TAG)
"""Tag keys, in the order the app lists them; the billing report is asked for exactly these."""

_MODAL_TAG_MAX = 63
"""modal 1.6 tags: letters, digits, '-', '.', '_', at most 63 characters
(modal._utils.name_utils.check_tag_dict)."""


def app_tags(resolved: ResolvedDeployment) -> dict[str, str]:
    """The tags of `resolved`'s app. Names are DNS-safe already; a local version such as
    0.1.0+g1a2b has a '+' that Modal refuses, so it is written 0.1.0-g1a2b."""
    version = re.sub(r"[^A-Za-z0-9._-]", "-", __version__)[:_MODAL_TAG_MAX]
    return {
        SERVICE_TAG: resolved.name,
        ENVIRONMENT_TAG: resolved.environment,
        VERSION_TAG: version,
    }
