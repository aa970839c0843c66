"""`pin`: resolve each model revision in a spec to the Hub's commit hash and write it in place.

The lookup is `huggingface_hub.HfApi.model_info` (GET {HF_ENDPOINT}/api/models/{id}/revision/
{rev}), run on the user's machine. The token comes only from the HF_TOKEN environment variable
(never a token file or the command line), and the endpoint from HF_ENDPOINT, read at call time.
The spec is changed through `set_values`, so comments and layout stay and an invalid result
writes nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from liftdeploy.errors import OpsError, first_line
from liftdeploy.spec.model import HF_TOKEN_ENV as TOKEN_VARIABLE
from liftdeploy.spec.specfile import Change, load_spec, read_yaml, set_values

ENDPOINT_VARIABLE = "HF_ENDPOINT"


def resolve_revision(
    model_id: str, revision: str | None, *, environ: Mapping[str, str] | None = None
) -> str:
    """The commit hash `revision` (None: the default branch) of `model_id` points to now."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    environ = os.environ if environ is None else environ
    token = environ.get(TOKEN_VARIABLE) or False  # False: never a stored token file
    api = HfApi(endpoint=environ.get(ENDPOINT_VARIABLE) or None, token=token)
    asked = f"{model_id}@{revision or 'the default branch'}"
    try:
        info = api.model_info(model_id, revision=revision, token=token)
    except GatedRepoError:
        raise OpsError(
            f"{model_id} is gated: accept its terms on the Hub, then export {TOKEN_VARIABLE} "
            f"with a token that has access and run pin again"
        ) from None
    except RevisionNotFoundError:
        raise OpsError(
            f"{model_id} has no revision {revision!r} on the Hub; fix model.revision (a branch, "
            f"tag or commit hash) and run pin again"
        ) from None
    except RepositoryNotFoundError:
        raise OpsError(
            f"{model_id} is not on the Hub (or is private: export {TOKEN_VARIABLE}); check model.id"
        ) from None
    except HTTPError as exc:
        raise OpsError(
            f"looking up {asked} on the Hub failed: {first_line(exc)}; retry, or "
            f"check {ENDPOINT_VARIABLE} and your network"
        ) from None
    except OSError as exc:
        raise OpsError(f"cannot reach the Hub for {asked}: {first_line(exc)}") from None
    sha = getattr(info, "sha", None)
    if not isinstance(sha, str) or len(sha) != 40:
        raise OpsError(
            f"the Hub's answer for {asked} carries no commit hash (got {sha!r}); "
            f"retry, or check {ENDPOINT_VARIABLE}"
        )
    return sha


@dataclass(frozen=True)
class PinTarget:
    """One place in the spec file that decides an environment's revision."""

    key: str
    """Dotted key to write: model.revision, or environments.<env>.model.revision."""
    model_id: str
    revision: str | None
    environments: tuple[str, ...]


def pin_targets(path: str | Path, environment: str | None = None) -> list[PinTarget]:
    """Where revisions are decided: the base spec (for every environment that does not set its
    own model) and each overlay that sets model.id or model.revision itself.

    With `environment`, only that environment: its overlay's key, which is created when the
    environment inherits the base (pinning staging must not move production).
    """
    spec = load_spec(path)
    overlays = read_yaml(path).get("environments") or {}

    def own_model(env: str) -> bool:
        model = (overlays.get(env) or {}).get("model") or {}
        return "id" in model or "revision" in model

    if environment is not None:
        resolved = spec.resolve(environment)  # names the valid environments when unknown
        alone = len(spec.environments) == 1 and not own_model(environment)
        key = "model.revision" if alone else f"environments.{environment}.model.revision"
        return [PinTarget(key, resolved.model.id, resolved.model.revision, (environment,))]
    inherit = tuple(env for env in spec.environments if not own_model(env))
    targets = [PinTarget("model.revision", spec.model.id, spec.model.revision, inherit)]
    for env in spec.environments:
        if own_model(env):
            resolved = spec.resolve(env)
            targets.append(
                PinTarget(
                    f"environments.{env}.model.revision",
                    resolved.model.id,
                    resolved.model.revision,
                    (env,),
                )
            )
    return targets


def pin(
    path: str | Path,
    environment: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> tuple[list[Change], list[str]]:
    """Resolve and write every revision `pin_targets` finds; returns the changes and notes.

    A local model directory has no revisions and is skipped with a note.
    """
    assignments: list[str] = []
    notes: list[str] = []
    for target in pin_targets(path, environment):
        if target.model_id.startswith(("/", ".")):
            notes.append(f"{target.key}: {target.model_id} is a local directory; nothing to pin")
            continue
        sha = resolve_revision(target.model_id, target.revision, environ=environ)
        if sha == target.revision:
            notes.append(f"{target.key}: already pinned to {sha}")
            continue
        assignments.append(f"{target.key}={json.dumps(sha)}")  # quoted: 12e4... is a YAML float
    return (set_values(path, assignments) if assignments else []), notes
