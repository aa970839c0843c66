"""A small client for a liftdeploy service: schema-constrained JSON answers, or a clear error.

Built on the `openai` SDK (the server is vLLM's OpenAI-compatible API) with the SDK's own
retries switched off, so exactly one retry policy applies: 429 and 503 answers and connection
errors are retried with exponential backoff, bounded in attempts and in total time. The URL,
credentials and model come from the environment or the spec, never from code:

    MODAL_ENDPOINT_URL                       the service's base URL (see liftdeploy.client.endpoints)
    LIFTDEPLOY_API_KEY (or VLLM_API_KEY)     the server's API key, sent as a Bearer token
    MODAL_PROXY_KEY + MODAL_PROXY_SECRET     a Modal proxy token (Modal-Key / Modal-Secret)
    LIFTDEPLOY_MODEL                         the served model name (default: asked from /v1/models)

An answer is returned only when it is complete (finish_reason "stop"), strict JSON and valid
against the schema; anything else raises a `ClientError` subclass naming what went wrong. Needs
neither torch nor vLLM; with the `schemacheck` extra installed, a schema the server's grammar
backend would refuse is refused here first, with the backend's reason.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import jsonschema
import openai

from liftdeploy.errors import ClientError
from liftdeploy.runtime.guard import CLIENT_VALIDATES_HEADER as _GUARD_VALIDATES_HEADER
from liftdeploy.runtime.guard import ERROR_TYPE as GUARD_ERROR_TYPE
from liftdeploy.runtime.guard import remote_reference_problem

if TYPE_CHECKING:
    from liftdeploy.spec.model import ResolvedDeployment

API_KEY_ENVS = ("LIFTDEPLOY_API_KEY", "VLLM_API_KEY")
"""Where the API key is read from, first match wins (VLLM_API_KEY is the Secret's own name)."""
PROXY_KEY_ENV = "MODAL_PROXY_KEY"
PROXY_SECRET_ENV = "MODAL_PROXY_SECRET"
MODEL_ENV = "LIFTDEPLOY_MODEL"

CLIENT_VALIDATES_HEADER = _GUARD_VALIDATES_HEADER.decode()
"""Sent with streamed requests: the service's guard refuses constrained streams it cannot
check, unless the client validates the answer itself. (GUARD_ERROR_TYPE is the error type of
the guard's 502 when it withholds an invalid answer.)"""

DEFAULT_REQUEST_TIMEOUT_S = 600.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
RETRY_STATUSES = frozenset({429, 503})

T = TypeVar("T")


class IncompleteAnswer(ClientError):
    """The answer was cut off (finish_reason "length"): not valid JSON, never a result."""


class InvalidJson(ClientError):
    """The answer is not strict JSON (e.g. raw control characters inside a string)."""


class SchemaViolation(ClientError):
    """The answer is JSON but does not match the schema."""


class UnsupportedSchema(ClientError):
    """The schema is not valid JSON Schema, or the grammar backend cannot compile it."""


class AuthError(ClientError):
    """The service refused the credentials (401/403)."""


class Overloaded(ClientError):
    """The service kept answering 429 (over its concurrency limit) until the retries ran out."""


class ServiceUnavailable(ClientError):
    """The service kept answering 503 or could not be reached, or the connection broke."""


class RequestRejected(ClientError):
    """The service refused the request as invalid (4xx): the message has its reason."""


class ServerError(ClientError):
    """The service failed while answering (5xx other than 503)."""


class RequestTimeout(ClientError):
    """No complete answer within the request timeout."""


@dataclass(frozen=True)
class RetryPolicy:
    """The one retry policy: which failures are retried, how often and for how long."""

    max_attempts: int = 6
    """Attempts in all, the first included."""
    initial_backoff_s: float = 0.5
    """Wait before the first retry; doubles each time, with jitter."""
    max_backoff_s: float = 15.0
    """Longest single wait (also caps a server's Retry-After)."""
    max_total_s: float = 180.0
    """No retry starts later than this many seconds after the first attempt."""
    cold_start_s: float = 0.0
    """503s (a container still starting after Modal scaled to zero) are retried for this long,
    however many attempts it takes, when it is longer than max_total_s. `Client.for_deployment`
    sets it to the plan's start-up time of a scale-to-zero environment."""

    def gives_up(self, attempt: int, elapsed_s: float, delay_s: float, *, starting: bool) -> bool:
        """Whether to stop after `attempt` failed `elapsed_s` into the call, rather than wait
        `delay_s`; `starting`: the failure was a 503, which cold_start_s may outlast."""
        if starting and self.cold_start_s > self.max_total_s:
            return elapsed_s + delay_s > self.cold_start_s
        return attempt >= self.max_attempts or elapsed_s + delay_s > self.max_total_s

    def backoff_s(self, retry: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (1-based): jittered exponential."""
        base = min(self.max_backoff_s, self.initial_backoff_s * 2 ** (retry - 1))
        delay = base / 2 + random.uniform(0, base / 2)  # noqa: S311 - jitter, not crypto
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_backoff_s))
        return delay


@dataclass
class Answer:
    """One validated answer and what it took to get it."""

    value: Any
    """The parsed, schema-valid JSON value."""
    text: str
    """The raw answer text."""
    finish_reason: str | None
    output_tokens: int | None
    """Completion tokens as counted by the server (None if it did not say)."""
    latency_s: float
    """From sending the request to the complete answer, retries included."""
    first_token_s: float | None = None
    """Time to the first text chunk (streaming only)."""


@dataclass
class Health:
    """One /health probe."""

    ok: bool
    status_code: int | None
    """HTTP status, or None when no answer came (connection refused, timeout)."""
    detail: str
    elapsed_s: float


@dataclass
class _Credentials:
    api_key: str | None = None
    proxy_key: str | None = None
    proxy_secret: str | None = None

    @classmethod
    def from_env(cls) -> _Credentials:
        creds = cls()
        creds.api_key = next((os.environ[n] for n in API_KEY_ENVS if os.environ.get(n)), None)
        creds.proxy_key = os.environ.get(PROXY_KEY_ENV) or None
        creds.proxy_secret = os.environ.get(PROXY_SECRET_ENV) or None
        if bool(creds.proxy_key) != bool(creds.proxy_secret):
            missing = PROXY_SECRET_ENV if creds.proxy_key else PROXY_KEY_ENV
            raise AuthError(
                f"{missing} is not set but its partner is; a Modal proxy token has two parts: "
                f"set both {PROXY_KEY_ENV} (wk-…) and {PROXY_SECRET_ENV} (ws-…)"
            )
        return creds


@dataclass
class ClientStats:
    """Counters shared by all threads using one client (read them after a load test)."""

    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_retry(self) -> None:
        with self._lock:
            self.retries += 1


class Client:
    """A client for one service URL. Thread-safe: one client can serve many threads."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        proxy_key: str | None = None,
        proxy_secret: str | None = None,
        backend: str | None = None,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
    ) -> None:
        """`base_url` is the service root (https://…modal.run), without /v1. `backend` is the
        server's structured-output backend, used by the local schema pre-check."""
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.model = model
        self.backend = backend
        self.retry = retry or RetryPolicy()
        self.stats = ClientStats()
        self._sent_credentials = (
            ", ".join(
                what
                for what, given in (("an API key", api_key), ("a Modal proxy token", proxy_key))
                if given
            )
            or "no credentials"
        )
        self._proxy_headers = (
            {"Modal-Key": proxy_key, "Modal-Secret": proxy_secret}
            if proxy_key and proxy_secret
            else {}
        )
        self._timeout = openai.Timeout(request_timeout_s, connect=connect_timeout_s)
        self._openai = openai.OpenAI(
            base_url=f"{self.base_url}/v1",
            api_key=api_key or "none",  # the SDK insists on a key; a server without one ignores it
            default_headers=self._proxy_headers,
            max_retries=0,  # our RetryPolicy is the only one
            timeout=self._timeout,
        )
        self._checked_schemas: set[str] = set()

    @classmethod
    def from_env(cls, url: str | None = None, **options: Any) -> Client:
        """A client configured only from environment variables (see the module docstring)."""
        from liftdeploy.client.endpoints import ENDPOINT_URL_ENV, check_url

        url = url or os.environ.get(ENDPOINT_URL_ENV, "").strip()
        if not url:
            raise ClientError(
                f"{ENDPOINT_URL_ENV} is not set; set it to the service's base URL (`modal "
                f"deploy` prints it; `liftdeploy health SPEC --env ENV` looks it up when logged "
                f"in to Modal)"
            )
        creds = _Credentials.from_env()
        options.setdefault("model", os.environ.get(MODEL_ENV) or None)
        return cls(
            check_url(url, production=False, source=ENDPOINT_URL_ENV),
            api_key=creds.api_key,
            proxy_key=creds.proxy_key,
            proxy_secret=creds.proxy_secret,
            **options,
        )

    @classmethod
    def for_deployment(
        cls,
        resolved: ResolvedDeployment,
        *,
        url: str | None = None,
        cold_start_patience_s: float | None = None,
        **options: Any,
    ) -> Client:
        """A client for one environment of a spec: its URL (see `resolve_url`), served model
        name, grammar backend and request timeout; credentials from the environment.

        When the environment scales to zero, 503s are retried for the plan's start-up time
        (`RetryPolicy.cold_start_s`), so the first request after an idle period waits for the
        cold start. A caller that will not wait that long says so with `cold_start_patience_s`
        and gets a ClientError at once, naming runtime.min_containers."""
        from liftdeploy.client.endpoints import resolve_url
        from liftdeploy.planner.report import planned_lifecycle

        cold_start_s = planned_lifecycle(resolved).cold_start_wait_s
        if cold_start_patience_s is not None and cold_start_s > cold_start_patience_s:
            raise ClientError(
                f"{resolved.app_name} scales to zero (runtime.min_containers: 0) and a cold "
                f"start may take up to {cold_start_s:,} s (`liftdeploy plan`), longer than the "
                f"{cold_start_patience_s:g} s you will wait; set runtime.min_containers: 1 for "
                f"the {resolved.environment} environment (one container always warm), or wait "
                f"longer"
            )
        options["retry"] = replace(
            options.get("retry") or RetryPolicy(), cold_start_s=float(cold_start_s)
        )
        creds = _Credentials.from_env()
        options.setdefault("model", resolved.model.name_for_clients)
        options.setdefault("backend", resolved.engine.structured_output_backend)
        # A little longer than the service's own limit, so that its JSON 504 arrives.
        options.setdefault("request_timeout_s", float(resolved.runtime.request_timeout_s + 30))
        return cls(
            resolve_url(resolved, url),
            api_key=creds.api_key,
            proxy_key=creds.proxy_key,
            proxy_secret=creds.proxy_secret,
            **options,
        )

    # -- requests ---------------------------------------------------------------------------

    def generate(
        self, prompt: str | list[dict[str, str]], schema: dict[str, Any], **options: Any
    ) -> Any:
        """The parsed, schema-valid answer to `prompt` (options as for `answer`)."""
        return self.answer(prompt, schema, **options).value

    def answer(
        self,
        prompt: str | list[dict[str, str]],
        schema: dict[str, Any],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        system: str | None = None,
    ) -> Answer:
        """Like `generate`, with the raw text, token count and latency."""
        request = self._request(prompt, schema, max_tokens, temperature, system)
        started = time.monotonic()
        response = self._with_retries(lambda: self._openai.chat.completions.create(**request))
        choice = response.choices[0]
        text = choice.message.content or ""
        usage = response.usage
        return Answer(
            value=self._validated(text, choice.finish_reason, schema),
            text=text,
            finish_reason=choice.finish_reason,
            output_tokens=usage.completion_tokens if usage else None,
            latency_s=time.monotonic() - started,
        )

    def stream_generate(
        self,
        prompt: str | list[dict[str, str]],
        schema: dict[str, Any],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        system: str | None = None,
    ) -> AnswerStream:
        """Stream the answer: iterate for text chunks; when the iteration ends the whole answer
        has been validated and is in `.answer` (`.value` for the parsed object)."""
        request = self._request(prompt, schema, max_tokens, temperature, system)
        request.update(
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={CLIENT_VALIDATES_HEADER: "1"},  # AnswerStream validates the whole answer
        )
        return AnswerStream(self, request, schema)

    def check_schema(self, schema: dict[str, Any]) -> None:
        """Refuse a schema locally: invalid JSON Schema or a reference outside the schema
        (the service refuses it too, and nothing here fetches it) always; one the grammar
        backend cannot compile when the optional `schemacheck` extra is installed."""
        key = json.dumps(schema, sort_keys=True)
        if key in self._checked_schemas:
            return
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise UnsupportedSchema(
                f"the schema is not valid JSON Schema: {exc.message} (at "
                f"{'/'.join(map(str, exc.absolute_path)) or 'the root'}); fix the schema"
            ) from None
        remote = remote_reference_problem(schema)
        if remote is not None:
            raise UnsupportedSchema(remote)
        if self.backend:
            from liftdeploy.client.schemacheck import SchemaCheckError, check_schema

            try:
                support = check_schema(schema, self.backend)
            except SchemaCheckError:  # the optional compilers are not installed: the server judges
                support = None
            if support is not None and not support.supported:
                raise UnsupportedSchema(
                    f"the {self.backend} backend cannot compile this schema: {support.reason}; "
                    f"simplify the schema or choose another engine.structured_output_backend"
                )
        self._checked_schemas.add(key)

    def health(self, timeout_s: float = 10.0) -> Health:
        """One GET /health. Unreachable or 503 is an unhealthy result; refused credentials
        raise AuthError (waiting would not fix them)."""
        started = time.monotonic()
        try:
            response = httpx.get(
                f"{self.base_url}/health",
                headers=self._proxy_headers,
                timeout=timeout_s,
            )
        except httpx.TransportError as exc:
            return Health(False, None, _describe_transport(exc), time.monotonic() - started)
        elapsed = time.monotonic() - started
        if response.status_code in (401, 403):
            raise self._auth_error(response.status_code, response.text)
        detail = (
            "healthy"
            if response.status_code == 200
            else (f"HTTP {response.status_code} {response.reason_phrase}".strip())
        )
        return Health(response.status_code == 200, response.status_code, detail, elapsed)

    def metrics(self, timeout_s: float = 10.0) -> str:
        """One GET /metrics: vLLM's Prometheus text. On Modal this request is routed like any
        other, so it starts a container when none is running."""
        try:
            response = httpx.get(
                f"{self.base_url}/metrics",
                headers=self._proxy_headers,
                timeout=timeout_s,
            )
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"{self.base_url}/metrics did not answer ({_describe_transport(exc)})"
            ) from None
        if response.status_code in (401, 403):
            raise self._auth_error(response.status_code, response.text)
        if response.status_code != 200:
            raise ServerError(
                f"{self.base_url}/metrics answered HTTP {response.status_code} "
                f"{response.reason_phrase}".rstrip()
            )
        return response.text

    def close(self) -> None:
        self._openai.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------

    def _request(
        self,
        prompt: str | list[dict[str, str]],
        schema: dict[str, Any],
        max_tokens: int | None,
        temperature: float | None,
        system: str | None,
    ) -> dict[str, Any]:
        self.check_schema(schema)
        messages = (
            [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        )
        if system:
            messages.insert(0, {"role": "system", "content": system})
        request: dict[str, Any] = {
            "model": self._model_name(),
            "messages": messages,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": _schema_name(schema), "schema": schema, "strict": True},
            },
        }
        if max_tokens is not None:
            request["max_tokens"] = max_tokens
        if temperature is not None:
            request["temperature"] = temperature
        return request

    def _model_name(self) -> str:
        if self.model is None:
            models = self._with_retries(lambda: self._openai.models.list().data)
            if not models:
                raise ClientError(f"{self.base_url} serves no model; set {MODEL_ENV}")
            self.model = models[0].id
        return self.model

    def _validated(self, text: str, finish_reason: str | None, schema: dict[str, Any]) -> Any:
        # The service's guard and this client judge answers with the same code.
        from liftdeploy.runtime.guard import parse_strict, schema_violation

        if finish_reason == "length":
            raise IncompleteAnswer(
                f"the answer was cut off at the token limit after {len(text)} characters, so it "
                f"is not complete JSON; raise max_tokens (or model.max_model_len) or ask for less"
            )
        if finish_reason not in ("stop", None):
            raise IncompleteAnswer(
                f"the answer ended with finish_reason {finish_reason!r}, not 'stop'; it is not a "
                f"complete result"
            )
        try:
            value = parse_strict(text)  # no raw control characters, NaN or duplicate keys
        except ValueError as exc:
            raise InvalidJson(
                f"the answer is not valid JSON ({exc}); with the xgrammar backend raw control "
                f"characters in strings with minLength/maxLength are a known defect — use the "
                f"guidance backend"
            ) from None
        problem = schema_violation(value, schema)
        if problem is not None:
            raise SchemaViolation(f"the answer does not match the schema {problem}")
        return value

    def _with_retries(self, call: Callable[[], T]) -> T:
        """Run `call`, retrying 429/503 and connection errors per the RetryPolicy."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return call()
            except openai.APIError as exc:
                error, retryable, retry_after_s = self._translate(exc)
                starting = isinstance(exc, openai.APIStatusError) and exc.status_code == 503
            if not retryable:
                raise error from None
            delay = self.retry.backoff_s(attempt, retry_after_s)
            if self.retry.gives_up(attempt, time.monotonic() - started, delay, starting=starting):
                raise type(error)(
                    f"{error} (gave up after {attempt} attempt{'s' * (attempt > 1)} in "
                    f"{time.monotonic() - started:.1f} s)"
                ) from None
            self.stats.count_retry()
            time.sleep(delay)

    def _translate(self, exc: openai.APIError) -> tuple[ClientError, bool, float | None]:
        """The ClientError for an SDK error, whether to retry it, and the server's Retry-After."""
        url = self.base_url
        if isinstance(exc, openai.APITimeoutError):
            return (
                RequestTimeout(
                    f"{url} gave no complete answer within {self._timeout.read:.0f} s; raise the "
                    f"request timeout or ask for less"
                ),
                False,
                None,
            )
        if isinstance(exc, openai.APIConnectionError):
            return (
                ServiceUnavailable(
                    f"could not reach {url} ({_describe_transport(exc.__cause__ or exc)}); check the "
                    f"URL and that the service is deployed (`liftdeploy health`)"
                ),
                True,
                None,
            )
        if not isinstance(exc, openai.APIStatusError):
            return ClientError(f"{url}: {exc}"), False, None
        status, detail = exc.status_code, _error_detail(exc)
        if status in (401, 403):
            return self._auth_error(status, detail), False, None
        retry_after = _retry_after_s(exc.response.headers.get("retry-after"))
        if status == 429:
            return (
                Overloaded(
                    f"{url} is over its concurrency limit (429: {detail}); slow down, or raise "
                    f"runtime.max_concurrent_requests / max_containers"
                ),
                True,
                retry_after,
            )
        if status == 503:
            return (
                ServiceUnavailable(
                    f"{url} is not ready (503: {detail}); a container may still be starting — "
                    f"`liftdeploy warmup` waits for it"
                ),
                True,
                retry_after,
            )
        if _error_type(exc) == GUARD_ERROR_TYPE:  # the server's guard withheld a bad answer
            kind = InvalidJson if "not valid JSON" in detail else SchemaViolation
            return kind(f"{url} withheld an invalid answer: {detail}"), False, None
        if status < 500:
            return RequestRejected(f"{url} rejected the request ({status}: {detail})"), False, None
        return (
            ServerError(
                f"{url} failed while answering ({status}: {detail}); see `liftdeploy logs`"
            ),
            False,
            None,
        )

    def _auth_error(self, status: int, detail: str) -> AuthError:
        return AuthError(
            f"{self.base_url} refused the credentials ({status}: {detail.strip()[:200]}); sent "
            f"{self._sent_credentials}. Set {API_KEY_ENVS[0]} to the service's API key (the "
            f"VLLM_API_KEY in its Modal Secret) and, for a proxy-auth endpoint, {PROXY_KEY_ENV} "
            f"and {PROXY_SECRET_ENV} to a token from `modal workspace proxy-tokens create`"
        )


class AnswerStream:
    """A streamed answer: iterate for text chunks; `.answer` once the iteration has ended.

    A failure before the first chunk is retried like any request; once text has been handed
    out, a broken connection raises ServiceUnavailable instead (a retry would repeat text)."""

    def __init__(self, client: Client, request: dict[str, Any], schema: dict[str, Any]) -> None:
        self._client, self._request, self._schema = client, request, schema
        self.answer: Answer | None = None

    @property
    def value(self) -> Any:
        """The parsed, schema-valid answer (after iterating)."""
        if self.answer is None:
            raise ClientError("iterate over the stream before reading its value")
        return self.answer.value

    def __iter__(self) -> Iterator[str]:
        client = self._client
        started = time.monotonic()
        create = client._openai.chat.completions.create
        stream = client._with_retries(lambda: create(**self._request))
        pieces: list[str] = []
        finish_reason: str | None = None
        output_tokens: int | None = None
        first_token_s: float | None = None
        try:
            for chunk in stream:
                if chunk.usage is not None:
                    output_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    finish_reason = choice.finish_reason or finish_reason
                    text = choice.delta.content if choice.delta else None
                    if text:
                        if first_token_s is None:
                            first_token_s = time.monotonic() - started
                        pieces.append(text)
                        yield text
        except openai.APIError as exc:
            error, _, _ = client._translate(exc)
            if isinstance(error, ServiceUnavailable):
                error = ServiceUnavailable(
                    f"{client.base_url} broke the connection mid-answer, after {len(pieces)} "
                    f"chunks ({_describe_transport(exc.__cause__ or exc)}); retry the request"
                )
            raise error from None
        finally:
            stream.close()
        text = "".join(pieces)
        if finish_reason is None:  # vLLM always ends with a finish_reason; the stream was cut
            raise ServiceUnavailable(
                f"{client.base_url} ended the stream before the answer finished "
                f"({len(text)} characters received); retry the request"
            )
        self.answer = Answer(
            value=client._validated(text, finish_reason, self._schema),
            text=text,
            finish_reason=finish_reason,
            output_tokens=output_tokens,
            latency_s=time.monotonic() - started,
            first_token_s=first_token_s,
        )


def _schema_name(schema: dict[str, Any]) -> str:
    title = str(schema.get("title") or "answer")
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in title)[:64]


def _error_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail") or body.get("error")
        if isinstance(message, dict):
            message = message.get("message")
        if message:
            return str(message)[:300]
    return (exc.response.reason_phrase or exc.message or "")[:300]


def _error_type(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    error = body.get("error", body) if isinstance(body, dict) else None
    return error.get("type") if isinstance(error, dict) else None


def _retry_after_s(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP date: rare here, fall back to our own backoff
        return None


def _describe_transport(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
