"""URL resolution: --url, then MODAL_ENDPOINT_URL, then Modal's lookup; production stays https."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from liftdeploy.client.endpoints import (
    ENDPOINT_URL_ENV,
    SERVER_CLASS_NAME,
    EndpointError,
    check_url,
    resolve_url,
)
from liftdeploy.spec.specfile import load_spec

REPO_ROOT = Path(__file__).resolve().parent.parent
SPEC = load_spec(REPO_ROOT / "examples" / "qwen25-coder-32b.yaml")
PRODUCTION = SPEC.resolve("production")
STAGING = SPEC.resolve("staging")


@pytest.fixture(autouse=True)
def _no_endpoint_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENDPOINT_URL_ENV, raising=False)


def test_explicit_url_wins_over_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENDPOINT_URL_ENV, "https://from-env.modal.run")
    assert resolve_url(PRODUCTION, "https://explicit.modal.run/") == "https://explicit.modal.run"
    assert resolve_url(PRODUCTION) == "https://from-env.modal.run"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://a--b.modal.run", "https://a--b.modal.run"),
        ("https://a--b.modal.run/", "https://a--b.modal.run"),
        ("https://a--b.modal.run/v1", "https://a--b.modal.run"),  # OpenAI-style base URL
        (" https://a--b.modal.run:8443 ", "https://a--b.modal.run:8443"),
    ],
)
def test_urls_are_normalised_to_the_service_root(given: str, expected: str) -> None:
    assert check_url(given, production=True, source="test") == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://a--b.modal.run",
        "https://localhost:8000",
        "https://127.0.0.1",
        "http://[::1]:8000",
        "https://0.0.0.0:8000",
        "https://api.localhost",
    ],
)
def test_production_refuses_plain_http_and_local_addresses(url: str) -> None:
    with pytest.raises(EndpointError, match="production") as info:
        resolve_url(PRODUCTION, url)
    assert "--env" in str(info.value)  # says what to do instead


def test_other_environments_accept_a_local_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENDPOINT_URL_ENV, "http://127.0.0.1:8000")
    assert resolve_url(STAGING) == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x.modal.run",
        "a--b.modal.run",
        "https://",
        "https://x.modal.run/generate",
        "https://x.modal.run/?q=1",
    ],
)
def test_malformed_urls_are_refused_with_the_fix(url: str) -> None:
    with pytest.raises(EndpointError, match="base URL"):
        resolve_url(STAGING, url)


def test_without_a_url_or_modal_login_the_error_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import modal.config

    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    if modal.config.config.get("token_id"):
        pytest.skip("a Modal token is configured here; this checks the logged-out message")
    with pytest.raises(EndpointError) as info:
        resolve_url(STAGING)
    message = str(info.value)
    assert "lift-sys-inference-staging" in message  # the app it looked for
    assert ENDPOINT_URL_ENV in message and "--url" in message and "modal token new" in message


def test_server_class_name_matches_the_template() -> None:
    """Modal looks the server up by its class name: the template's `@app.server` class."""
    text = (REPO_ROOT / "template" / "app.py.jinja").read_text()
    rendered = sorted((REPO_ROOT / "examples").glob("rendered/*/app.py"))
    names = {_server_class(p.read_text()) for p in rendered}
    assert f"\nclass {SERVER_CLASS_NAME}:" in text
    assert names <= {SERVER_CLASS_NAME}


def _server_class(source: str) -> str | None:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            for decorator in node.decorator_list:
                call = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(call, ast.Attribute) and call.attr == "server":
                    return node.name
    return None
