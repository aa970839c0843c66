"""Client-side traffic split for a release: a share of requests goes to the candidate app.

Modal has no traffic splitting of its own, so the split happens in the caller. `liftdeploy
release start` writes the release record into a Modal Dict (`<app>-release`, production's Modal
environment): the phase, the share, the candidate's URL and served model name. A
`ReleaseRouter` re-reads that record every `refresh_s` seconds and picks, request by request,
the candidate with probability `share`. `RoutedClient` is the `Client` that uses it: a request
sent to the candidate that fails there (unreachable, 5xx, 429, an invalid answer) is sent to
production instead, and the candidate is left out until the next read, so a dying candidate
costs callers at most one failed attempt per refresh. Without a readable record every request
goes to production.

    client = RoutedClient.for_deployment(resolved, router=ReleaseRouter.for_deployment(resolved))

The store is anything with modal.Dict's `get(key, default)` and `put(key, value)`; modal is
imported only when the Dict itself is opened.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from liftdeploy.client.api import (
    AnswerStream,
    AuthError,
    Client,
    InvalidJson,
    Overloaded,
    RequestTimeout,
    RetryPolicy,
    SchemaViolation,
    ServerError,
    ServiceUnavailable,
)

if TYPE_CHECKING:
    from liftdeploy.client.api import Answer
    from liftdeploy.spec.model import ResolvedDeployment

RELEASE_KEY = "release"
"""The one key of the release Dict: the record `liftdeploy release` keeps there."""
CANDIDATE_SUFFIX = "-candidate"
RELEASE_DICT_SUFFIX = "-release"

FAILOVER_ERRORS = (
    ServiceUnavailable,
    ServerError,
    Overloaded,
    RequestTimeout,
    AuthError,
    InvalidJson,
    SchemaViolation,
)
"""Candidate failures a caller should never see: production answers instead. A request that
production would refuse as well (4xx, a cut-off answer, an unsupported schema) is not resent."""
CANDIDATE_RETRY = RetryPolicy(max_attempts=1)
"""No retries on the candidate: production is the retry."""

_log = logging.getLogger("liftdeploy.routing")


class ShareStore(Protocol):
    """What the router needs of a modal.Dict (the same names and parameters)."""

    def get(self, key: Any, default: Any | None = None) -> Any: ...

    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool: ...


def candidate_app_name(resolved: ResolvedDeployment) -> str:
    """The candidate's Modal app name: production's name with `-candidate`."""
    return resolved.app_name + CANDIDATE_SUFFIX


def release_dict_name(resolved: ResolvedDeployment) -> str:
    """The Modal Dict that holds the release record, in production's Modal environment."""
    return resolved.app_name + RELEASE_DICT_SUFFIX


def open_release_dict(resolved: ResolvedDeployment, *, create: bool = False) -> ShareStore:
    """production's release Dict (created when `create`: only `release start` does)."""
    import modal

    return modal.Dict.from_name(
        release_dict_name(resolved),
        environment_name=resolved.modal_environment,
        create_if_missing=create,
    )


@dataclass(frozen=True)
class Route:
    """Where requests may go right now: the candidate's URL and model, and its share (0..1)."""

    share: float = 0.0
    url: str | None = None
    model: str | None = None


NO_ROUTE = Route()


def route_of(record: Any) -> Route:
    """The route a release record asks for; anything but a running release with a URL and a
    share in (0, 1] sends everything to production."""
    if not isinstance(record, dict) or record.get("phase") != "running":
        return NO_ROUTE
    share, url = record.get("share"), record.get("candidate_url")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        return NO_ROUTE
    if not isinstance(url, str) or not url:
        return NO_ROUTE
    model = record.get("model")
    return Route(float(share), url, model if isinstance(model, str) else None)


class ReleaseRouter:
    """Reads the release record at most every `refresh_s` seconds and picks a side per request.

    `rng` and `clock` are injectable so a test is deterministic. Thread-safe."""

    def __init__(
        self,
        store: ShareStore,
        *,
        refresh_s: float = 10.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._rng = rng or random.Random()  # noqa: S311 - a traffic split, not crypto
        self._clock = clock
        self._lock = threading.Lock()
        self._route = NO_ROUTE
        self._read_at: float | None = None
        self._failed_at: float | None = None

    @classmethod
    def for_deployment(cls, resolved: ResolvedDeployment, **options: Any) -> ReleaseRouter:
        """A router reading production's release Dict, at the spec's release.refresh_s."""
        options.setdefault("refresh_s", resolved.release.refresh_s)
        return cls(open_release_dict(resolved), **options)

    def current(self) -> Route:
        """The route, re-read when older than refresh_s; an unreadable store means production."""
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self.refresh_s:
                self._read_at = now
                self._failed_at = None
                try:
                    self._route = route_of(self.store.get(RELEASE_KEY))
                except Exception as exc:  # noqa: BLE001 - any store failure: production only
                    _log.warning("release record not read (%s); sending to production", exc)
                    self._route = NO_ROUTE
            if self._failed_at is not None:
                return NO_ROUTE
            return self._route

    def pick(self) -> Route | None:
        """The candidate's route for this request, or None for production."""
        route = self.current()
        if route.url is None:
            return None
        with self._lock:
            draw = self._rng.random()
        return route if draw < route.share else None

    def candidate_failed(self) -> None:
        """Leave the candidate out until the next read of the record."""
        with self._lock:
            self._failed_at = self._clock()


class RoutedClient(Client):
    """A `Client` for production that sends the release's share of requests to the candidate
    and falls back to production when the candidate fails. Without `router` it is a Client."""

    def __init__(
        self, base_url: str, *, router: ReleaseRouter | None = None, **options: Any
    ) -> None:
        super().__init__(base_url, **options)
        self.router = router
        self._options = options
        self._candidates: dict[tuple[str, str | None], Client] = {}
        self._candidates_lock = threading.Lock()
        self.candidate_answers = 0
        """Answers the candidate gave (the rest came from production)."""
        self.failovers = 0
        """Requests the candidate failed and production answered."""

    def answer(self, prompt: Any, schema: dict[str, Any], **options: Any) -> Answer:
        candidate = self._candidate()
        if candidate is not None:
            try:
                answer = candidate.answer(prompt, schema, **options)
            except FAILOVER_ERRORS as exc:
                self._failed_over(exc)
            else:
                with self._candidates_lock:
                    self.candidate_answers += 1
                return answer
        return super().answer(prompt, schema, **options)

    def stream_generate(self, prompt: Any, schema: dict[str, Any], **options: Any) -> AnswerStream:
        candidate = self._candidate()
        if candidate is None:
            return super().stream_generate(prompt, schema, **options)
        return _FailoverStream(
            self,
            candidate.stream_generate(prompt, schema, **options),
            lambda: Client.stream_generate(self, prompt, schema, **options),
        )

    def _candidate(self) -> Client | None:
        route = self.router.pick() if self.router else None
        if route is None or route.url is None:
            return None
        key = (route.url, route.model)
        with self._candidates_lock:
            if key not in self._candidates:
                options = {**self._options, "retry": CANDIDATE_RETRY}
                options["model"] = route.model or options.get("model") or self.model
                self._candidates[key] = Client(route.url, **options)
            return self._candidates[key]

    def _failed_over(self, exc: Exception) -> None:
        assert self.router is not None
        self.router.candidate_failed()
        with self._candidates_lock:
            self.failovers += 1
        _log.warning("candidate failed (%s); production answers", exc)


class _FailoverStream(AnswerStream):
    """The candidate's stream; if it fails before its first chunk, production's stream."""

    def __init__(
        self, owner: RoutedClient, candidate: AnswerStream, production: Callable[[], AnswerStream]
    ) -> None:
        self.answer = None
        self._owner, self._candidate, self._production = owner, candidate, production

    def __iter__(self):  # type: ignore[no-untyped-def]
        sent = False
        try:
            for text in self._candidate:
                sent = True
                yield text
            self.answer = self._candidate.answer
            with self._owner._candidates_lock:
                self._owner.candidate_answers += 1
            return
        except FAILOVER_ERRORS as exc:
            if sent:  # text already handed out: a resend would repeat it
                raise
            self._owner._failed_over(exc)
        stream = self._production()
        yield from stream
        self.answer = stream.answer
