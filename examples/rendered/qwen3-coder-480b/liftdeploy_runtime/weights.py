"""Are the pinned weights complete on the Volume? Checked before vLLM starts (stdlib only).

The weights Volume holds a Hugging Face Hub cache (HF_HUB_CACHE):
`models--<org>--<name>/refs/<branch>` holds a commit hash, and `snapshots/<commit>/<file>` links
to the downloaded blob. huggingface_hub links a file into its snapshot only once its download
has finished, so a snapshot missing a file (or linking to a missing blob) is incomplete. The
server runs offline; without this check an incomplete Volume shows up as an obscure vLLM error
minutes into a cold start.

One writer at a time: `download_model` claims the snapshot in a modal.Dict before it writes
(`single_writer`), so a second download of the same snapshot stops with a clear message instead
of writing the same files at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

CONFIG_FILE = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
"""Any one of these holds a tokenizer (fast tokenizer, sentencepiece, or BPE vocabulary)."""
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
DEFAULT_BRANCH = "main"


class WeightsMissing(RuntimeError):
    """The pinned snapshot is not complete on the weights Volume."""


class DownloadInProgress(RuntimeError):
    """Another download is writing the same snapshot."""


class Claims(Protocol):
    """What `single_writer` needs of a modal.Dict (modal 1.6.4's signatures)."""

    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool: ...
    def get(self, key: Any, default: Any | None = None) -> Any: ...
    def __setitem__(self, key: Any, value: Any) -> None: ...
    def pop(self, key: Any, default: Any = ...) -> Any: ...


def snapshot_key(model_id: str, revision: str | None) -> str:
    """The claim's key: one snapshot of one repository."""
    return f"download:{model_id}@{revision or DEFAULT_BRANCH}"


@contextmanager
def single_writer(
    claims: Claims,
    key: str,
    *,
    writer: str,
    hold_s: float,
    what: str,
    now: Callable[[], float] = time.time,
) -> Iterator[None]:
    """Hold the claim on `key` while the body writes; raise DownloadInProgress when another
    writer holds it. `put(..., skip_if_exists=True)` is atomic in a modal.Dict, so of two
    writers starting at once exactly one wins. A claim expires after `hold_s` (the download's
    time limit: past it Modal has stopped that writer) and the same `writer` (a retry of the
    same function call) takes its own claim back."""
    claim = {"writer": writer, "until": now() + hold_s}
    if not claims.put(key, claim, skip_if_exists=True):
        held = claims.get(key) or {}
        if held.get("writer") != writer and held.get("until", 0) > now():
            left_s = held["until"] - now()
            raise DownloadInProgress(
                f"another download ({held.get('writer')}) is writing {what} now; wait for it "
                f"to finish (its claim lapses within {left_s / 60:.0f} min if it died), then "
                f"run the download again: a complete snapshot is not fetched twice"
            )
        claims[key] = claim  # our own retry, or a claim its writer outlived
    try:
        yield
    finally:
        if (claims.get(key) or {}).get("writer") == writer:
            claims.pop(key, None)


def repo_cache_dir(hub_cache: str | Path, model_id: str) -> Path:
    """Where the Hub cache keeps one model repository."""
    return Path(hub_cache) / ("models--" + model_id.replace("/", "--"))


def snapshot_problem(hub_cache: str | Path, model_id: str, revision: str | None) -> str | None:
    """What is missing for `model_id` at `revision` (None: the default branch), or None.

    A model id that is a local directory (starts with / or .) is checked in place.
    """
    if model_id.startswith(("/", ".")):
        snapshot = Path(model_id)
        if not snapshot.is_dir():
            return f"{model_id} is not a directory"
        return _missing_files(snapshot)
    repo = repo_cache_dir(hub_cache, model_id)
    if not repo.is_dir():
        return f"nothing of {model_id} is in {hub_cache}"
    commit = _commit(repo, revision or DEFAULT_BRANCH)
    if commit is None:
        return f"the cache has no ref {revision or DEFAULT_BRANCH!r} for {model_id}"
    snapshot = repo / "snapshots" / commit
    if not snapshot.is_dir():
        present = sorted(p.name for p in (repo / "snapshots").glob("*") if p.is_dir())
        return f"no snapshot for revision {commit}" + (
            f" (the cache holds {', '.join(present)})" if present else ""
        )
    return _missing_files(snapshot)


def require_snapshot(
    hub_cache: str | Path, model_id: str, revision: str | None, *, volume: str, fix: str
) -> None:
    """Raise WeightsMissing naming the revision, the Volume and the command that fills it."""
    problem = snapshot_problem(hub_cache, model_id, revision)
    if problem is not None:
        raise WeightsMissing(
            f"weights for {model_id} at {revision or 'the default branch'} are not on Volume "
            f"{volume} ({problem}); run `{fix}`"
        )


def _commit(repo: Path, revision: str) -> str | None:
    """A commit hash as is; a branch or tag through the cache's refs/ (None if unknown)."""
    ref = repo / "refs" / revision
    if ref.is_file():
        return ref.read_text(encoding="utf-8").strip()
    if len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return revision
    return None


def _missing_files(snapshot: Path) -> str | None:
    missing = [] if (snapshot / CONFIG_FILE).is_file() else [CONFIG_FILE]
    if not any((snapshot / name).is_file() for name in TOKENIZER_FILES):
        missing.append(f"a tokenizer ({' or '.join(TOKENIZER_FILES)})")
    index = next((snapshot / name for name in WEIGHT_INDEXES if (snapshot / name).is_file()), None)
    if index is not None:
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return f"{index.name} is unreadable ({type(exc).__name__}: {exc})"
        absent = [shard for shard in shards if not (snapshot / shard).is_file()]
        if absent:
            more = f" and {len(absent) - 3} more" if len(absent) > 3 else ""
            shown = ", ".join(absent[:3]) + more
            missing.append(
                f"{len(absent)} of the {len(shards)} shards {index.name} names ({shown})"
            )
    elif not any((snapshot / name).is_file() for name in SINGLE_WEIGHT_FILES):
        missing.append(f"the weights ({' or '.join(WEIGHT_INDEXES + SINGLE_WEIGHT_FILES)})")
    if not missing:
        return None
    return f"snapshot {snapshot.name} lacks " + "; ".join(missing)
