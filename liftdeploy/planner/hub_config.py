"""config.json from the Hugging Face Hub, for a model that is neither local nor in the catalog.

Only config.json is downloaded (with huggingface_hub, on the user's machine), plus the
`quantize_config.json` that GPTQ/AWQ checkpoints keep beside it when config.json has no
`quantization_config` of its own and the model's name says it is quantized. The files land in
liftdeploy's cache beside the tiny model
(`~/.cache/liftdeploy/hub-configs/<org>/<name>/<revision>/`), where the planner looks first
next time, so a later `plan` works offline. A gated model needs HF_TOKEN in the environment:
the local counterpart of the Modal Secret in model.hf_token_secret. A token is never
taken on the command line (it would show in `ps` and shell history).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from liftdeploy.errors import PlanError, first_line
from liftdeploy.spec import catalog
from liftdeploy.spec.model import HF_TOKEN_ENV, revision_problem

CONFIG_FILE = "config.json"
QUANTIZE_CONFIG_FILE = "quantize_config.json"
"""Where GPTQ/AWQ checkpoints made by AutoGPTQ/AutoAWQ keep their settings (vLLM reads it too)."""
_QUANTIZED_NAME_HINTS = ("gptq", "awq", "int4", "int8", "4bit", "8bit")
DEFAULT_REVISION = "main"
PROBE_TIMEOUT_S = 10


def hub_endpoint() -> str:
    """The Hub's address: HF_ENDPOINT when set (a mirror, or a test's stand-in), else the Hub."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


CACHED_SOURCE = "liftdeploy's cache: cached from the Hub by an earlier plan, or saved there by hand"
"""How `plan` labels a config.json read from cached_config_dir: it cannot tell which."""


def cached_config_dir(model_id: str, revision: str | None = None) -> Path:
    """Where a fetched (or hand-saved) config.json for this model and revision lives.

    Raises PlanError for a model id or revision that would lead anywhere else (`..`, an
    absolute path): both are joined into the path, so both are checked first."""
    ref = revision or DEFAULT_REVISION
    if problem := (revision_problem(ref) if revision else None) or _hub_id_problem(model_id):
        raise PlanError(problem)
    org, _, name = model_id.partition("/")
    root = catalog.cache_root() / "hub-configs"
    target = root / org / name / ref
    if not target.resolve().is_relative_to(root.resolve()):  # a symlink inside the cache
        raise PlanError(f"{target} leads outside {root}; remove the link")
    return target


def cached_config_path(model_id: str, revision: str | None = None) -> Path | None:
    """The cached config.json, if a previous fetch (or the user) put it there."""
    if "/" not in model_id or _hub_id_problem(model_id):
        return None  # a local path that does not exist: nothing of it is in the cache
    path = cached_config_dir(model_id, revision) / CONFIG_FILE
    return path if path.is_file() else None


def _hub_id_problem(model_id: str) -> str | None:
    """Why `model_id` is no `org/name` Hub id that can name a cache directory, or None."""
    parts = model_id.split("/")
    if len(parts) == 2 and all(
        part not in ("", ".", "..") and "\\" not in part and part == part.strip() for part in parts
    ):
        return None
    return (
        f"model.id {model_id!r} is not an `org/name` Hub id; fix model.id, or point it at "
        f"a local directory that holds config.json"
    )


def read_config(path: Path) -> dict[str, Any]:
    """A cached config.json with the quantization settings saved beside it merged in."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        quantize = path.parent / QUANTIZE_CONFIG_FILE
        if "quantization_config" not in config and quantize.is_file():
            config["quantization_config"] = json.loads(quantize.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlanError(f"cannot read {path}: {first_line(exc)}; fix or delete the file") from None
    if not isinstance(config, dict):
        raise PlanError(f"{path} is not a JSON object; delete it and plan again to fetch it anew")
    return config


def fetch_config(model_id: str, revision: str | None = None) -> Path:
    """Download the model's config.json (and its quantize_config.json if it names one) into the
    cache; returns the config.json path. Every failure is one PlanError that says what to do."""
    target = cached_config_dir(model_id, revision)
    path = _download(model_id, CONFIG_FILE, revision, target)
    config = read_config(path)
    if "quantization_config" not in config and _name_says_quantized(model_id):
        _download(model_id, QUANTIZE_CONFIG_FILE, revision, target, optional=True)
    return path


def _name_says_quantized(model_id: str) -> bool:
    name = model_id.rsplit("/", 1)[-1].lower()
    return any(hint in name for hint in _QUANTIZED_NAME_HINTS)


def _download(
    model_id: str,
    filename: str,
    revision: str | None,
    target: Path,
    *,
    optional: bool = False,
) -> Path:
    try:
        from huggingface_hub import errors as hub_errors
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    except ImportError:
        raise PlanError(
            f"{model_id} is not in liftdeploy's catalog and reading its {filename} from the Hub "
            f"needs huggingface_hub: pip install huggingface_hub, or "
            f"{_save_hint(model_id, revision)}"
        ) from None
    # An empty HF_TOKEN means none; huggingface_hub would otherwise send a blank bearer.
    token = os.environ.get(HF_TOKEN_ENV) or None
    where = f"{hub_endpoint()}/{model_id}"
    ref = revision or DEFAULT_REVISION
    try:
        # One HEAD without retries first: offline, hf_hub_download alone retries for ~20 s.
        endpoint = hub_endpoint()
        get_hf_file_metadata(
            hf_hub_url(model_id, filename, revision=ref, endpoint=endpoint),
            token=token,
            timeout=PROBE_TIMEOUT_S,
            endpoint=endpoint,
        )
        return Path(
            hf_hub_download(
                model_id, filename, revision=ref, local_dir=target, token=token, endpoint=endpoint
            )
        )
    except hub_errors.GatedRepoError:
        have = "the HF_TOKEN in your environment has no access" if token else "HF_TOKEN is not set"
        raise PlanError(
            f"{model_id} is gated and {have}: accept its terms at {where}, then "
            f"`export {HF_TOKEN_ENV}=...` (the token your Modal Secret model.hf_token_secret "
            f"holds; liftdeploy never takes a token on the command line) and plan again"
        ) from None
    except hub_errors.RepositoryNotFoundError:
        raise PlanError(
            f"no model {model_id!r} at {where} (or it is private and "
            f"{'your HF_TOKEN cannot see it' if token else 'HF_TOKEN is not set'}); check "
            f"model.id, or export {HF_TOKEN_ENV}=... for a private model"
        ) from None
    except hub_errors.RevisionNotFoundError:
        raise PlanError(
            f"{model_id} has no revision {revision!r} on the Hub; fix model.revision"
        ) from None
    except hub_errors.LocalEntryNotFoundError as exc:  # offline: a subclass of the next one
        raise PlanError(
            f"cannot reach {hub_endpoint()} to read {model_id}'s {filename} "
            f"({first_line(exc)}); {_save_hint(model_id, revision)}"
        ) from None
    except hub_errors.EntryNotFoundError:
        if optional:
            return target / filename
        raise PlanError(
            f"{model_id} has no {filename} at {where}; it is not a Transformers model vLLM can "
            f"serve, or use a local directory with its config.json as model.id"
        ) from None
    # Transport errors are requests', httpx' or httpx2's depending on huggingface_hub's release.
    except Exception as exc:  # noqa: BLE001 - the network boundary: every other failure
        raise PlanError(
            f"cannot read {model_id}'s {filename} from {hub_endpoint()} ({first_line(exc)}); "
            f"{_save_hint(model_id, revision)}"
        ) from None


def _save_hint(model_id: str, revision: str | None) -> str:
    url = f"{hub_endpoint()}/{model_id}/resolve/{revision or DEFAULT_REVISION}/{CONFIG_FILE}"
    return (
        f"offline, save {url} as {cached_config_dir(model_id, revision) / CONFIG_FILE} "
        f"(or point model.id at a local directory holding it)"
    )
