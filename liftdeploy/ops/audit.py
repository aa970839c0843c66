"""`audit-endpoints`: find hard-coded service endpoints in a codebase.

The original plan's gap 2: a dev endpoint (the Modal URL of its `generate` function) written
into a provider adapter, so production silently called development. Flagged:

- Modal URLs (`*.modal.run`, `*.modal.direct`) in code and config files, with or without a
  scheme (schemeless only when the host has Modal's `workspace--label` shape);
- in code files only, loopback URLs with a literal port (localhost:PORT) and URLs with a raw IP
  address: a development server or one machine baked in. (Config files legitimately hold local
  origins, such as a CORS origin on localhost.)

An environment-variable fallback that carries a literal URL
(`os.getenv("MODAL_ENDPOINT_URL", "https://...")`) is flagged too: when the variable is
missing the code silently calls the baked-in endpoint, which is the failure to prevent; the fix
is to drop the default so a missing variable fails loudly. Reading the variable with no literal
(`os.environ["MODAL_ENDPOINT_URL"]`) is the pattern to use and is never flagged.
Documentation (Markdown, reStructuredText, text) and dotenv files, where URLs belong, are not
scanned; nor are placeholder hosts in examples (`https://workspace--app.modal.run`,
`your-workspace--...`); a line carrying `liftdeploy: allow-endpoint` is skipped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from liftdeploy.client.endpoints import ENDPOINT_URL_ENV as ENV_VAR
from liftdeploy.errors import LiftdeployError

ALLOW_MARKER = "liftdeploy: allow-endpoint"
"""Put this in a comment on a line to accept its endpoint deliberately."""
MAX_FILE_BYTES = 2_000_000
"""Larger files are data, not source: skipped."""

CODE_SUFFIXES = frozenset(
    {
        ".py",
        ".pyi",
        ".ipynb",
        ".js",
        ".jsx",
        ".mjs",
        ".cjs",
        ".ts",
        ".tsx",
        ".go",
        ".rs",
        ".java",
        ".kt",
        ".scala",
        ".rb",
        ".php",
        ".cs",
        ".swift",
        ".c",
        ".h",
        ".cc",
        ".cpp",
        ".hpp",
        ".sh",
        ".bash",
        ".zsh",
        ".fish",
        ".ps1",
        ".lua",
        ".r",
        ".jl",
        ".ex",
        ".exs",
        ".dart",
        ".vue",
        ".svelte",
    }
)
CONFIG_SUFFIXES = frozenset(
    {
        ".yaml",
        ".yml",
        ".toml",
        ".json",
        ".ini",
        ".cfg",
        ".conf",
        ".properties",
        ".tf",
        ".tfvars",
    }
)
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "__pycache__",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "site-packages",
        ".eggs",
        "dist",
        "build",
        ".idea",
        ".vscode",
    }
)

Kind = Literal["modal", "loopback", "raw-ip"]

_STOP = r"[^\s'\"`<>()\[\]{},;\\]*"  # the rest of a URL up to a quote, bracket or space
_MODAL = re.compile(
    rf"(?P<scheme>(?:https?|wss?)://)?(?P<host>[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*"
    rf"\.modal\.(?:run|direct))(?![\w.-]){_STOP}"
)
_LOOPBACK = re.compile(
    rf"(?:https?|wss?)://(?:localhost|127(?:\.\d{{1,3}}){{3}}|0\.0\.0\.0|\[::1?\]):\d+{_STOP}"
)
_RAW_IP = re.compile(
    rf"(?:https?|wss?)://(?!127\.|0\.0\.0\.0)\d{{1,3}}(?:\.\d{{1,3}}){{3}}\b{_STOP}"
)
# Workspace parts of example URLs in docs and messages (`workspace--app.modal.run`).
PLACEHOLDER_WORKSPACES = frozenset(
    {
        "workspace",
        "your-workspace",
        "my-workspace",
        "example",
        "username",
        "your-username",
    }
)
# Reading an environment variable, in the languages above.
_ENV_READ = re.compile(
    r"getenv\s*\(|environ(\.get)?\s*[\[(]|process\.env|Getenv\s*\(|env::var|ENV\s*\[|\$\{\w+:-"
)


class AuditError(LiftdeployError):
    """The audit could not run (the path does not exist): exit 2, unlike findings (exit 1)."""

    exit_code = 2


@dataclass(frozen=True)
class Finding:
    """One hard-coded endpoint."""

    path: str
    line: int
    url: str
    kind: Kind
    fallback: bool
    """The URL is the default of an environment-variable read."""

    @property
    def advice(self) -> str:
        if self.fallback:
            return (
                f"remove the literal default: read {ENV_VAR} with no fallback "
                f'(os.environ["{ENV_VAR}"]) so a missing variable fails loudly'
            )
        if self.kind == "modal":
            return (
                f"read it from {ENV_VAR} (or look it up by app name with "
                f"liftdeploy.client.endpoints.resolve_url) instead"
            )
        return f"read it from an environment variable ({ENV_VAR} for the model endpoint) instead"

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "env_var": ENV_VAR, "advice": self.advice}

    def format(self) -> str:
        return f"{self.path}:{self.line}: {self.url}\n    {self.advice}"


@dataclass(frozen=True)
class AuditReport:
    root: str
    files_scanned: int
    findings: list[Finding]

    def to_dict(self) -> dict[str, object]:
        return {
            "root": self.root,
            "files_scanned": self.files_scanned,
            "env_var": ENV_VAR,
            "findings": [f.to_dict() for f in self.findings],
        }


def audit(root: str | Path) -> AuditReport:
    """Scan a file or a directory tree for hard-coded endpoints."""
    root = Path(root)
    if not root.exists():
        raise AuditError(f"{root}: no such file or directory; pass the codebase to audit")
    files = [root] if root.is_file() else sorted(source_files(root))
    findings: list[Finding] = []
    scanned = 0
    for path in files:
        text = _read_text(path)
        if text is None:
            continue
        scanned += 1
        shown = str(path if root.is_file() else path.relative_to(root))
        findings += scan_text(text, shown, code=path.suffix.lower() not in CONFIG_SUFFIXES)
    return AuditReport(root=str(root), files_scanned=scanned, findings=findings)


def source_files(root: Path) -> Iterator[Path]:
    """Code and config files under `root`, skipping VCS data, virtualenvs and dependencies."""
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = [
            d
            for d in dirnames
            if d not in SKIP_DIRS
            and not d.endswith(".egg-info")
            and not (Path(directory, d) / "pyvenv.cfg").exists()
        ]
        for name in filenames:
            suffix = Path(name).suffix.lower()
            if suffix in CODE_SUFFIXES or suffix in CONFIG_SUFFIXES:
                yield Path(directory, name)


def scan_text(text: str, path: str, *, code: bool = True) -> list[Finding]:
    """Findings in one file's text; `code=False` (config files) looks for Modal URLs only."""
    patterns: list[tuple[Kind, re.Pattern[str]]] = [("modal", _MODAL)]
    if code:
        patterns += [("loopback", _LOOPBACK), ("raw-ip", _RAW_IP)]
    findings = []
    for number, line in enumerate(text.splitlines(), start=1):
        if ALLOW_MARKER in line:
            continue
        fallback = bool(_ENV_READ.search(line))
        for kind, pattern in patterns:
            for match in pattern.finditer(line):
                if kind == "modal" and _not_a_modal_endpoint(match):
                    continue
                findings.append(Finding(path, number, match.group(0), kind, fallback))
    return findings


def _not_a_modal_endpoint(match: re.Match[str]) -> bool:
    host = match.group("host")
    if "--" not in host:
        # Modal hosts are `workspace--label`; without a scheme `client.modal.run` is code.
        return not match.group("scheme")
    return host.split("--", 1)[0].lower() in PLACEHOLDER_WORKSPACES


def _read_text(path: Path) -> str | None:
    """The file's text, or None for binary, oversized or unreadable files."""
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_FILE_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")
