"""What makes a name valid: Modal's rules for object, app and environment names, DNS-safe
service names, git's rules for a revision, and secret names that must not be secret values."""

from __future__ import annotations

import re

from liftdeploy.spec.messages import shown

DNS_NAME = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")
MAX_APP_NAME = 64
# Modal's own rule for Volume, Dict, Secret and App names (modal._utils.name_utils
# .is_valid_object_name: at most 64 of [A-Za-z0-9._-], not an App ID), plus a letter or digit
# first: Modal takes `--help` or `..x`, but such a name becomes a flag or a path in a command.
MODAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MODAL_APP_ID = re.compile(r"^ap-[a-zA-Z0-9]{22}$")
MODAL_NAME_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
# Modal's rule for environment names (name_utils.is_valid_environment_name, no periods).
MODAL_ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def is_modal_name(value: str) -> bool:
    """Whether Modal takes `value` as a Volume, Dict, Secret or App name, and no command line
    or path could read it as anything else."""
    return bool(MODAL_NAME.match(value)) and not _MODAL_APP_ID.match(value)


def check_modal_name(value: str, field: str) -> str:
    """The one check of every Modal object name in the spec: Modal's rule, one message."""
    if not is_modal_name(value):
        raise ValueError(
            f"{field} {shown(value)} is not a Modal object name; use {MODAL_NAME_RULE} "
            f"(and not an App ID such as ap-...)"
        )
    return value


def check_secret_name(value: str, field: str) -> str:
    """A Modal Secret *name*; values never belong in a spec (they would land in files)."""
    looks_like_value = (
        not is_modal_name(value)
        or value.startswith(("hf_", "sk-", "sk_", "ghp_", "ak-", "as-"))
        or (
            len(value) >= 32 and any(c.isdigit() for c in value) and any(c.isupper() for c in value)
        )
    )
    if looks_like_value:
        shown = value if len(value) <= 6 else value[:3] + "…"
        raise ValueError(
            f"{field} {shown!r} looks like a secret value, not a secret name. Store the value "
            f"with `modal secret create NAME KEY=...` and put only NAME here "
            f"({MODAL_NAME_RULE})."
        )
    return value


# What git's check-ref-format refuses in a ref name, and what would make it an option or a path.
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|^[/-]|/$|\.$|\.lock(/|$)|(^|/)\.")


def revision_problem(revision: str) -> str | None:
    """Why `revision` is not a commit hash, tag or branch name (git's ref-name rules), or None.
    A revision becomes a URL part, a directory in caches and a vLLM argument: never a path."""
    if not revision or revision == "@" or len(revision) > 255 or _BAD_REF.search(revision):
        return (
            f"model.revision {shown(revision)} is not a commit hash, tag or branch name; write "
            f"the 40-character commit hash (`liftdeploy pin`) or a git ref name (no spaces, "
            f"'..', '~^:?*[\\', leading '/' or '-', or component starting with '.')"
        )
    return None


def suggest_name(value: str) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")
    cleaned = re.sub(r"-{2,}", "-", cleaned)
    if not cleaned or not cleaned[0].isalpha():
        cleaned = "svc-" + cleaned
    return cleaned[:MAX_APP_NAME] or "my-service"
