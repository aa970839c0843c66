"""Where a service's files are: the spec given on the command line and the Modal app beside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from liftdeploy.errors import OpsError
from liftdeploy.spec.specfile import SPEC_FILE

APP_FILE = "app.py"


@dataclass(frozen=True)
class ServiceFiles:
    """A spec file and, when it sits in a rendered service directory, the Modal app beside it."""

    spec_path: Path
    app_path: Path | None

    @property
    def directory(self) -> Path:
        return self.spec_path.parent


def locate_service(value: str | Path) -> ServiceFiles:
    """SPEC as given on the command line: a spec file or a rendered service directory."""
    path = Path(value)
    spec_path = path / SPEC_FILE if path.is_dir() else path
    if not spec_path.is_file():
        problem = f"has no {SPEC_FILE}" if path.is_dir() else "no such file"
        raise OpsError(
            f"{path}: {problem}; pass a spec file or a service directory rendered by "
            f"`liftdeploy render`"
        )
    app_path = spec_path.parent / APP_FILE
    return ServiceFiles(spec_path=spec_path, app_path=app_path if app_path.is_file() else None)
