"""Where a deployment answers: its base URL, never written into code.

In order: an explicit `--url`, the `MODAL_ENDPOINT_URL` environment variable, then Modal's own
lookup of the deployed server of that environment's app. A production URL must be https and not
a local address, so a test endpoint can never stand in for production by accident.
"""

from __future__ import annotations

import ipaddress
import os
from typing import TYPE_CHECKING

from liftdeploy.errors import ClientError, first_line
from liftdeploy.runtime.monitor import BadURL, parse_url

if TYPE_CHECKING:
    from liftdeploy.spec.model import ResolvedDeployment

ENDPOINT_URL_ENV = "MODAL_ENDPOINT_URL"
"""Environment variable that names the service's base URL (no path), e.g. https://…modal.run."""

SERVER_CLASS_NAME = "Server"
"""Name of the `@app.server` class in the rendered app: Modal looks the server up by it."""


class EndpointError(ClientError):
    """No usable URL for a deployment: none configured, Modal unreachable, or an unsafe one."""


def resolve_url(resolved: ResolvedDeployment, url: str | None = None) -> str:
    """The base URL of `resolved`'s service (scheme://host[:port], no trailing slash)."""
    if url:
        return check_url(url, production=resolved.production, source="--url")
    from_env = os.environ.get(ENDPOINT_URL_ENV, "").strip()
    if from_env:
        return check_url(from_env, production=resolved.production, source=ENDPOINT_URL_ENV)
    return check_url(
        modal_server_url(resolved),
        production=resolved.production,
        source=f"Modal's URL for app {resolved.app_name!r}",
    )


def check_url(url: str, *, production: bool, source: str) -> str:
    """`url` normalised (no trailing slash), or an EndpointError naming the source and fix;
    messages show only scheme://host (parse_url, the one URL reader), never path or password."""
    example = "https://workspace--app-server.modal.run"
    try:
        parts = parse_url(
            url,
            source=source,
            fix=(
                f"give the service's base URL, e.g. {example} (credentials through "
                f"LIFTDEPLOY_API_KEY or MODAL_PROXY_KEY / MODAL_PROXY_SECRET)"
            ),
        )
    except BadURL as exc:
        raise EndpointError(str(exc)) from None
    base = f"{parts.scheme}://{parts.netloc}"
    if parts.query or parts.fragment or parts.path.rstrip("/") not in ("", "/v1"):
        raise EndpointError(
            f"{source} ({base}) has a path or query; give only the base URL ({base})"
        )
    assert parts.hostname  # parse_url refuses a URL without one
    if production and (parts.scheme != "https" or _is_local(parts.hostname)):
        raise EndpointError(
            f"{source} ({base}) is used for the production environment but is "
            f"{'a local address' if _is_local(parts.hostname) else 'plain http'}; production "
            f"traffic must go to the deployed https endpoint — pass --env with a non-production "
            f"environment to test a local server"
        )
    return base


def modal_server_url(resolved: ResolvedDeployment) -> str:
    """Ask Modal for the URL of the deployed `@app.server` of this environment's app."""
    import modal
    import modal.exception

    app_name, env_name = resolved.app_name, resolved.modal_environment
    where = f"app {app_name!r}" + (f" in Modal environment {env_name!r}" if env_name else "")
    no_url_fix = f"pass --url or set {ENDPOINT_URL_ENV}"
    try:
        server = modal.Server.from_name(app_name, SERVER_CLASS_NAME, environment_name=env_name)
        url = server.get_url()
    except modal.exception.AuthError as exc:
        raise EndpointError(
            f"no URL for {where}: --url and {ENDPOINT_URL_ENV} are not set and Modal refused the "
            f"lookup ({first_line(exc)}); {no_url_fix}, or log in with `modal token new` (or "
            f"set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET)"
        ) from None
    except modal.exception.NotFoundError:
        raise EndpointError(
            f"no deployed server {SERVER_CLASS_NAME!r} in {where}; deploy it "
            f"(`liftdeploy deploy SPEC --env {resolved.environment}`) or {no_url_fix}"
        ) from None
    except (modal.exception.Error, OSError) as exc:
        raise EndpointError(
            f"could not ask Modal for the URL of {where} ({first_line(exc)}); {no_url_fix}"
        ) from None
    if not url:
        raise EndpointError(f"Modal has no URL for the server of {where} yet; {no_url_fix}")
    return url


def _is_local(hostname: str) -> bool:
    host = hostname.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
