"""Structured-output guard: no answer that breaks its JSON schema leaves the service as valid.

An ASGI middleware that vLLM's OpenAI server loads with
`--middleware liftdeploy.runtime.guard.StructuredOutputGuard` (vLLM calls
`app.add_middleware(StructuredOutputGuard)`, which makes it the outermost layer). It watches
POST /v1/chat/completions and /v1/completions requests that ask for JSON
(`response_format` json_schema / json_object, or `structured_outputs` json / json_object):

- the whole answer is buffered, each choice's text is parsed strictly (`json.loads`, no
  NaN/Infinity) and validated against the requested schema with `jsonschema`;
- valid: passed through unchanged;
- invalid only because of raw control characters (U+0000-U+001F) inside strings (the XGrammar
  0.2.8/0.2.9 defect with minLength/maxLength strings): escaped, which keeps every string's
  value, and passed on only if the repaired text then validates; the response says so in the
  `x-liftdeploy-structured` header, a counter goes up and a JSON log line is written;
- anything else: 502 with an OpenAI-style error body naming the choice and the problem;
- cut by max_tokens (finish_reason "length"): passed through unchanged, marked `incomplete`
  (the finish_reason already tells clients the answer is not a result);
- streaming constrained requests: refused with 400 (validation needs the whole answer), unless
  the request carries `x-liftdeploy-client-validates` (liftdeploy.client's streaming calls,
  which validate the whole answer themselves): such a stream passes through unbuffered;
- a schema with a reference outside itself (`$ref`/`$dynamicRef` to a URL or another file, in
  any position, relative ones read against the `$id`s around them): refused with 400 before
  generation, whatever the grammar backend; every check resolves references with
  LOCAL_REGISTRY, which retrieves nothing, so no request can make the server open a connection;
- the removed `guided_json`-style fields: refused with 400 (vLLM 0.32 would silently ignore
  them and answer unconstrained);
- JSON-constrained requests to other endpoints (/v1/responses, Anthropic /v1/messages, Cohere
  chat): refused with 400 naming the two endpoints whose answers are checked.

Under the guidance backend a schema llguidance refuses is not refused at once
(liftdeploy.runtime.schema_rewrite): an exact rewrite is sent instead when one compiles, else a
relaxed grammar (llguidance's `lenient` option, which ignores the keywords it does not
implement), and the answer is always judged against the schema the client sent. An answer under
a relaxed grammar that breaks the schema is sampled again (a new seed when the request has one)
up to MAX_ATTEMPTS times in all, while the request's time limit leaves room for another try,
then withheld (502). `x-liftdeploy-grammar` says exact, rewritten or relaxed and
`x-liftdeploy-attempts` how many generations the answer took; a schema that cannot be served
even relaxed is refused with 400 naming the problem and the change that would make it
servable. An answer cut by max_tokens when the request set none and the schema allows an
unbounded string or array carries `x-liftdeploy-hint` saying where and what to set.

`x-liftdeploy-structured` carries one verdict per choice, comma-separated: valid, repaired,
or incomplete. An answer that cannot be checked (jsonschema cannot evaluate its schema, or the
check would take longer than VALIDATION_BUDGET_S, e.g. a `pattern` with catastrophic
backtracking; every keyword checks the deadline, uniqueItems in linear time) is withheld like an invalid one (`unchecked`, 502, with a message saying that a
retry will not help and the schema must be simplified): unchecked output is never handed back
as valid. The check runs in worker threads, off the event loop, so a costly schema never stalls
/health or other requests.
Counters: `liftdeploy_structured_output_total{verdict=...}` (the answers callers got) and
`liftdeploy_structured_grammar_total{event=relaxed|resample|rejected_after_resampling}` on
vLLM's /metrics (prometheus registry), and in every guard log line.

Dependencies: the standard library plus `jsonschema` and `prometheus_client`, both of which
vLLM itself requires, so the Modal image needs nothing beyond vLLM and this package.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import jsonschema
import jsonschema._legacy_keywords
import referencing
import referencing.exceptions
import referencing.jsonschema

from liftdeploy.runtime.lifecycle import REQUEST_TIMEOUT_ENV
from liftdeploy.runtime.schema_rewrite import GrammarPlan, plan_for_guidance

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

GUARDED_PATHS = ("/v1/chat/completions", "/v1/completions")
VERDICT_HEADER = b"x-liftdeploy-structured"
ATTEMPTS_HEADER = b"x-liftdeploy-attempts"
"""How many generations the answer took (more than 1: resampled under a relaxed grammar)."""
GRAMMAR_HEADER = b"x-liftdeploy-grammar"
"""Guidance backend: exact (the schema as sent), rewritten (an exact rewrite) or relaxed."""
HINT_HEADER = b"x-liftdeploy-hint"
MAX_ATTEMPTS = 3
"""Generations per request under a relaxed grammar: the first and at most two resamples."""
ERROR_TYPE = "InvalidStructuredOutput"
CLIENT_VALIDATES_HEADER = b"x-liftdeploy-client-validates"
"""Opt-in for streaming a constrained answer unbuffered; only for clients that validate it."""
LEGACY_FIELDS = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")
_NON_GENERATING_SUFFIXES = ("/render", "/tokenize", "/detokenize")
"""Endpoints that accept a chat request but generate nothing: constraints there are harmless."""
_PROBLEM_CHARS = 300
"""Longest problem text quoted back to the client (a violating value can be huge)."""
VALIDATION_BUDGET_S = 2.0
"""Longest the check of one response may take. A schema that needs more is too expensive to
check: the answer is withheld (502, verdict `unchecked`), never returned unchecked."""
_CHECK_THREADS = 4
"""Worker threads for checks; the budget ends each check, so a costly schema holds one briefly."""

logger = logging.getLogger("liftdeploy.guard")
counts: Counter[str] = Counter()
"""Verdicts since the process started (also in each log line and on /metrics)."""
grammar_events: Counter[str] = Counter()
"""relaxed (requests served under a relaxed grammar), resample, rejected_after_resampling."""

try:  # vLLM requires prometheus_client; outside vLLM the counter lives only in `counts`.
    import prometheus_client

    _metric: Any = prometheus_client.Counter(
        "liftdeploy_structured_output",
        "Constrained answers checked by the liftdeploy guard",
        ["verdict"],
    )
    _grammar_metric: Any = prometheus_client.Counter(
        "liftdeploy_structured_grammar",
        "Relaxed grammars, resamples and final rejections",
        ["event"],
    )
except ImportError:  # pragma: no cover - vLLM always has it
    _metric = _grammar_metric = None


@dataclass(frozen=True)
class AnswerVerdict:
    """What the guard decided about one choice."""

    kind: str
    """valid | repaired | incomplete | unchecked | invalid_json | schema_violation"""
    text: str | None
    """The text to return (the repaired one for `repaired`)."""
    problem: str | None = None

    @property
    def rejected(self) -> bool:
        return self.kind in ("invalid_json", "schema_violation", "unchecked")


class GuardRefusal(Exception):
    """A constrained request the guard refuses before it reaches vLLM (400)."""


class TooExpensive(Exception):
    """The check ran out of its time budget."""


class RemoteReference(Exception):
    """A schema refers to a document outside itself, which nothing here ever fetches."""

    def __init__(self, uri: str) -> None:
        super().__init__(f"{uri!r} is outside the schema and is never fetched")
        self.uri = uri


def _refuse_retrieval(uri: str) -> referencing.Resource[Any]:
    raise RemoteReference(uri)


LOCAL_REGISTRY: referencing.Registry[Any] = referencing.Registry(retrieve=_refuse_retrieval)
"""The reference registry of every check (guard, client, schema-check): it retrieves nothing,
so only the schema itself (its `#/...` pointers, anchors and embedded `$id`s) resolves and no
`$ref` can make this process open a connection or wait on one."""

_REFERENCE_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")


def remote_reference_problem(schema: Any) -> str | None:
    """Why `schema` cannot be served: a reference (in any position, resolved against the `$id`s
    around it) that points outside the schema; None when every reference is local."""
    found = _remote_reference(schema)
    if found is None:
        return None
    keyword, ref, uri = found
    where = "" if uri == ref else f" (resolves to {uri!r})"
    return (
        f'the schema refers outside itself with "{keyword}": {ref!r}{where}; schemas are '
        'never fetched: copy the referenced schema under "$defs" and refer to it as '
        '"#/$defs/NAME"'
    )


def _remote_reference(schema: Any) -> tuple[str, str, str] | None:
    """(keyword, reference, absolute URI) of the first reference leaving `schema`, or None.

    Walks what jsonschema would evaluate: every subschema of the schema's dialect and every
    local reference's target, each with the base URI its `$id`s give it."""
    if not isinstance(schema, dict):
        return None
    try:
        base = _draft_of(schema)
        specification = referencing.jsonschema.specification_with(
            base.ID_OF(base.META_SCHEMA) or "urn:unknown-dialect",
            default=referencing.Specification.OPAQUE,
        )
        root = specification.create_resource(schema)
        root_uri = root.id() or ""
        registry = LOCAL_REGISTRY.with_resource(root_uri, root)
    except Exception:  # noqa: BLE001 - unreadable $schema/$id: the check answers `unchecked`
        return None
    try:
        registry = registry.crawl()  # every embedded $id known up front: no crawl per lookup
    except Exception:  # noqa: BLE001 - a malformed subschema; lookups then crawl as they go
        pass
    pending = [(registry.resolver(root_uri), root)]
    seen = {id(schema)}
    while pending:
        resolver, resource = pending.pop()
        contents = resource.contents
        for keyword in _REFERENCE_KEYWORDS:
            ref = contents.get(keyword) if isinstance(contents, dict) else None
            if not isinstance(ref, str):
                continue
            try:
                resolved = resolver.lookup(ref)
            except referencing.exceptions.Unresolvable as err:
                remote = _remote_cause(err)
                if remote is not None:
                    return keyword, ref, remote.uri
                continue  # a local reference to nothing: jsonschema reports it, nothing fetched
            except Exception:  # noqa: BLE001 - malformed target; the check reports it later
                continue
            if isinstance(resolved.contents, dict) and id(resolved.contents) not in seen:
                seen.add(id(resolved.contents))
                pending.append(
                    (
                        resolved.resolver,
                        referencing.Resource.from_contents(
                            resolved.contents, default_specification=specification
                        ),
                    )
                )
        try:
            subresources = list(resource.subresources())
        except Exception:  # noqa: BLE001 - a malformed keyword value holds no subschemas
            continue
        for subresource in subresources:
            if isinstance(subresource.contents, dict) and id(subresource.contents) not in seen:
                seen.add(id(subresource.contents))
                pending.append((resolver.in_subresource(subresource), subresource))
    return None


def _remote_cause(error: BaseException) -> RemoteReference | None:
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, RemoteReference):
        cause = cause.__cause__
    return cause


_budget = threading.local()


def _time_left() -> float | None:
    """Seconds left of the running check's budget (None: no budget); raises TooExpensive once
    it is spent. Every schema keyword calls it, so a check stops soon after its deadline."""
    deadline = getattr(_budget, "deadline", None)
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TooExpensive
    return left


def requested_schema(request: dict[str, Any]) -> dict[str, Any] | bool | None:
    """The JSON schema a request constrains its answer to, or None when it asks for no JSON.

    `response_format` overrides `structured_outputs`, as in vLLM. Regex, choice, grammar and
    structural-tag constraints are not JSON schemas and pass unguarded.
    """
    if any(request.get(field) is not None for field in LEGACY_FIELDS):
        raise GuardRefusal(
            "guided_json/guided_regex/guided_choice/guided_grammar were removed in vLLM 0.32 and "
            "would be ignored (the answer would be unconstrained); send "
            'response_format={"type": "json_schema", "json_schema": {"name": ..., "schema": ...}} '
            "or structured_outputs instead"
        )
    response_format = request.get("response_format")
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind == "json_schema":
            json_schema = response_format.get("json_schema") or {}
            return json_schema.get("schema", {}) if isinstance(json_schema, dict) else {}
        if kind == "json_object":
            return {"type": "object"}
    structured = request.get("structured_outputs")
    if isinstance(structured, dict):
        schema = structured.get("json")
        if isinstance(schema, str):
            try:
                return json.loads(schema)
            except ValueError:
                return None  # vLLM answers this one with its own 400
        if isinstance(schema, (dict, bool)):
            return schema
        if structured.get("json_object"):
            return {"type": "object"}
    return None


def escape_control_characters(text: str) -> str:
    """Escapes raw U+0000-U+001F characters inside JSON strings; the strings' values stay the
    same, so the repair is lossless. Characters outside strings are left for the parser."""
    out = []
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            elif char < " ":
                char = json.dumps(char)[1:-1]
        elif char == '"':
            in_string = True
        out.append(char)
    return "".join(out)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicated = sorted({key for key in keys if keys.count(key) > 1})
        raise ValueError(f"duplicate keys {duplicated} (parsers disagree on which one wins)")
    return dict(pairs)


def parse_strict(text: str) -> Any:
    """json.loads without its extensions (NaN, Infinity, duplicate keys) and with control
    characters rejected."""
    return json.loads(
        text, strict=True, parse_constant=_reject_constant, object_pairs_hook=_reject_duplicate_keys
    )


def _exact_multiple_of(
    validator: Any, divisor: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """multipleOf in decimal arithmetic: jsonschema divides floats, so it finds 73.99 not a
    multiple of 0.01 and would make the guard withhold a correct answer."""
    if not validator.is_type(instance, "number") or not isinstance(divisor, (int, float)):
        return
    if Fraction(str(instance)) % Fraction(str(divisor)):
        yield jsonschema.ValidationError(f"{instance!r} is not a multiple of {divisor}")


def validator_for(schema: dict[str, Any] | bool) -> Any:
    """A jsonschema validator for `schema` (its declared draft, else 2020-12) with exact
    multipleOf, every keyword bounded by the running check's budget, and references resolved
    only inside the schema (LOCAL_REGISTRY); format is an annotation, as jsonschema treats it
    by default."""
    return _with_exact_multiple_of(_draft_of(schema))(schema, registry=LOCAL_REGISTRY)


def _draft_of(schema: dict[str, Any] | bool) -> Any:
    """The jsonschema validator class of the schema's declared draft, else 2020-12."""
    return jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)


def _search(pattern: str, text: str) -> bool:
    """JSON Schema patterns are ECMA-262 regexes (\\p{L} and friends): the `regex` module
    (a vLLM dependency) reads them where Python's `re` raises; `re` is the fallback. `regex`
    stops at the check's deadline and lets other threads run meanwhile (it releases the GIL)."""
    try:
        import regex
    except ImportError:  # pragma: no cover - vLLM installs regex
        import re

        return re.search(pattern, text) is not None
    try:
        return regex.search(pattern, text, timeout=_time_left(), concurrent=True) is not None
    except TimeoutError:
        raise TooExpensive from None


def _ecma_pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _ecma_pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """additionalProperties with patternProperties matched by `_search`: jsonschema matches
    them with `re`, which no deadline stops and which holds every other thread meanwhile."""
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    extras = [
        key
        for key in instance
        if key not in properties and not any(_search(pattern, key) for pattern in patterns)
    ]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        yield jsonschema.ValidationError(
            f"additional properties are not allowed ({', '.join(map(repr, sorted(extras)))} "
            f"unexpected)"
        )


def _unique_items(
    validator: Any, unique: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """uniqueItems in linear time, stopped by the deadline: jsonschema compares unhashable
    items pairwise (18 s for 4,000 objects, in one keyword call no deadline stopped)."""
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[Any] = set()
    for index, item in enumerate(instance):
        key = _equality_key(item)
        if key in seen:
            yield jsonschema.ValidationError(
                f"item {index} repeats an earlier item (uniqueItems): {item!r}"
            )
            return
        seen.add(key)


def _equality_key(value: Any) -> Any:
    """A hashable stand-in for a JSON value, equal exactly when JSON Schema finds the values
    equal (1 == 1.0, true != 1, key order ignored); checks the deadline at every value."""
    _time_left()
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, (int, float)):
        return ("number", value)  # Python hashes 1 and 1.0 alike and finds them equal
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, dict):
        return ("object", frozenset((key, _equality_key(item)) for key, item in value.items()))
    return ("array", tuple(_equality_key(item) for item in value))


def _within_budget(keyword: Callable[..., Any]) -> Callable[..., Iterator[Any]]:
    def checked(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
        _time_left()
        yield from keyword(validator, value, instance, schema) or ()

    return checked


@functools.cache
def _with_exact_multiple_of(base: type) -> Any:
    keywords = {
        **base.VALIDATORS,
        "multipleOf": _exact_multiple_of,  # type: ignore[attr-defined]
        "pattern": _ecma_pattern,
        "patternProperties": _ecma_pattern_properties,
        "additionalProperties": _additional_properties,
        "uniqueItems": _unique_items,
    }
    # Draft 2019-09 split `dependencies` into dependentRequired/dependentSchemas; a schema
    # without $schema (read as 2020-12) that uses it means it, and the grammar enforces it.
    keywords.setdefault(
        "dependencies", jsonschema._legacy_keywords.dependencies_draft4_draft6_draft7
    )
    return jsonschema.validators.extend(
        base, {name: _within_budget(keyword) for name, keyword in keywords.items()}
    )


def schema_violation(value: Any, schema: dict[str, Any] | bool) -> str | None:
    """The most relevant way `value` breaks `schema`, or None when it validates."""
    error = jsonschema.exceptions.best_match(validator_for(schema).iter_errors(value))
    if error is None:
        return None
    return f"at {error.json_path}: {error.message}"


def judge_answer(
    text: str | None,
    schema: dict[str, Any] | bool,
    finish_reason: str | None,
    *,
    budget_s: float | None = None,
) -> AnswerVerdict:
    """Decides what to return for one choice's text, within budget_s seconds when given."""
    _budget.deadline = None if budget_s is None else time.monotonic() + budget_s
    try:
        return _judge(text, schema, finish_reason)
    except TooExpensive:
        return AnswerVerdict(
            "unchecked",
            None,
            f"the schema is too expensive to check (over "
            f"{budget_s:g} s; a `pattern` with nested repetition is the usual cause)",
        )
    finally:
        _budget.deadline = None


def _judge(
    text: str | None, schema: dict[str, Any] | bool, finish_reason: str | None
) -> AnswerVerdict:
    if finish_reason == "length":
        return AnswerVerdict("incomplete", text)
    if text is None:
        return AnswerVerdict("invalid_json", None, "the answer is empty")
    kind, candidate = "valid", text
    try:
        value = parse_strict(text)
    except (ValueError, RecursionError) as err:
        candidate = escape_control_characters(text)
        if candidate == text:
            return AnswerVerdict("invalid_json", None, f"the answer is not valid JSON ({err})")
        try:
            value = parse_strict(candidate)
        except (ValueError, RecursionError) as repaired_err:
            return AnswerVerdict(
                "invalid_json", None, f"the answer is not valid JSON ({repaired_err})"
            )
        kind = "repaired"
    try:
        problem = schema_violation(value, schema)
    except TooExpensive:
        raise
    except Exception as err:  # noqa: BLE001 - a schema jsonschema cannot evaluate must not crash the server
        remote = _remote_cause(err)
        if remote is not None:
            return AnswerVerdict(
                "unchecked",
                None,
                f"the answer could not be checked: the schema "
                f"refers to {remote.uri!r}, outside itself, which is never fetched",
            )
        return AnswerVerdict(
            "unchecked",
            None,
            f"the answer could not be checked: jsonschema cannot evaluate the schema ({err})",
        )
    if problem is not None:
        return AnswerVerdict("schema_violation", None, f"the answer breaks its schema {problem}")
    return AnswerVerdict(kind, candidate)


def _choice_text(choice: dict[str, Any]) -> tuple[str | None, Callable[[str], None]]:
    """A choice's answer text and a setter for it (chat: message.content, completions: text)."""
    if isinstance(choice.get("message"), dict):
        message = choice["message"]
        return message.get("content"), lambda text: message.__setitem__("content", text)
    return choice.get("text"), lambda text: choice.__setitem__("text", text)


def _count(verdict: str, **fields: Any) -> None:
    counts[verdict] += 1
    if _metric is not None:
        _metric.labels(verdict=verdict).inc()
    if verdict not in ("valid", "incomplete"):
        logger.warning(
            "structured output %s",
            verdict,
            extra={
                "event": "structured_output",
                "verdict": verdict,
                **fields,
                "counts": dict(counts),
            },
        )


def _error_body(message: str, status: int) -> bytes:
    return json.dumps(
        {
            "error": {
                "message": message,
                "type": ERROR_TYPE if status >= 500 else "BadRequestError",
                "param": None,
                "code": status,
            }
        }
    ).encode()


async def _send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    headers = [
        (name, value)
        for name, value in headers
        if name.lower() not in (b"content-length", b"content-type")
    ]
    headers += [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class StructuredOutputGuard:
    """ASGI middleware: checks every JSON-constrained answer before it leaves the server."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "").removeprefix(scope.get("root_path", ""))
        if scope["type"] != "http" or scope.get("method") != "POST" or not _sends_json(scope):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        replay = _replaying(body, receive)
        try:
            try:
                request = json.loads(body)
            except RecursionError:
                raise GuardRefusal(
                    "the request body nests JSON too deeply to read; send a flatter request"
                ) from None
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
            if path not in GUARDED_PATHS and not path.endswith(_NON_GENERATING_SUFFIXES):
                _refuse_unguarded_constraint(request)
            schema = requested_schema(request) if path in GUARDED_PATHS else None
            remote = remote_reference_problem(schema)
            if remote is not None:  # whatever the backend: xgrammar would compile it
                raise GuardRefusal(remote)
            streaming = _true(request.get("stream"))
            if schema is not None and streaming and _client_validates(scope):
                schema = None  # liftdeploy.client validates the whole streamed answer itself
            if schema is not None and streaming:
                raise GuardRefusal(
                    "stream=true is refused for JSON-constrained requests: this service validates "
                    "each answer against its schema before returning it, which needs the whole "
                    "answer; send stream=false"
                )
            if schema is not None and _true(request.get("echo")):
                raise GuardRefusal(
                    "echo=true is refused for JSON-constrained requests (the prompt "
                    "would be part of the answer); send echo=false"
                )
            plan = None
            if schema is not None and _backend(scope) == "guidance":
                plan = await _plan_off_loop(schema, _any_whitespace(scope))
                if plan is not None and plan.mode == "refused":
                    raise GuardRefusal(plan.problem)
        except GuardRefusal as refusal:
            _count("refused", path=path, problem=str(refusal))
            await _send_json(send, 400, _error_body(str(refusal), 400), [])
            return
        except ValueError:
            schema = None  # not JSON: vLLM answers with its own 400
        if schema is None:
            await self.app(scope, replay, send)
            return
        if (
            plan is not None and plan.changed
        ):  # the grammar gets the rewrite, the judge the original
            body = json.dumps(_with_grammar_schema(request, plan.schema)).encode()
            scope = {**scope, "headers": _with_content_length(scope.get("headers", []), len(body))}
            replay = _replaying(body, receive)
        extra_headers = [] if plan is None else [(GRAMMAR_HEADER, _grammar_kind(plan).encode())]
        if plan is not None and plan.mode == "relaxed":
            _count_grammar("relaxed", path=path, enforced_by_guard=list(plan.enforced_by_guard))
        started, slowest = time.monotonic(), 0.0
        for attempt in range(1, MAX_ATTEMPTS + 1):
            response, attempt_started = _BufferedResponse(), time.monotonic()
            await self.app(scope, replay, response.send)
            slowest = max(slowest, time.monotonic() - attempt_started)
            judged = await _judged(response, schema)
            if judged is None:
                await response.replay(send)  # vLLM's own errors and refusals pass unchanged
                return
            resample = (
                plan is not None
                and plan.mode == "relaxed"
                and attempt < MAX_ATTEMPTS
                and _resamplable(judged[2], request)
                and _time_for_another(time.monotonic() - started, slowest)
            )
            if not resample:
                break
            _count_grammar(
                "resample",
                path=path,
                attempt=attempt,
                request_id=response.header(b"x-request-id"),
                problem="; ".join(v.problem or "" for v in judged[2] if v.rejected),
            )
            body = json.dumps(_reseeded(request, plan.schema, attempt)).encode()  # type: ignore[union-attr]
            scope = {**scope, "headers": _with_content_length(scope.get("headers", []), len(body))}
            replay = _replaying(body, receive)
        extra_headers.append((ATTEMPTS_HEADER, str(attempt).encode()))
        hint = _truncation_hint(request, schema, judged[2])
        if hint is not None:
            extra_headers.append((HINT_HEADER, hint.encode("ascii", "replace")))
        await self._answer(
            response, judged, path, send, _backend(scope), extra_headers, plan, attempt
        )

    async def _answer(
        self,
        response: _BufferedResponse,
        judged: tuple[dict[str, Any], list[Any], list[AnswerVerdict]],
        path: str,
        send: Send,
        backend: str | None,
        extra_headers: list[tuple[bytes, bytes]],
        plan: GrammarPlan | None,
        attempts: int,
    ) -> None:
        answer, texts, verdicts_of = judged
        request_id = response.header(b"x-request-id")
        verdicts, problems = [], []
        for index, ((_, set_text), verdict) in enumerate(zip(texts, verdicts_of)):
            _count(
                verdict.kind,
                path=path,
                request_id=request_id,
                choice=index,
                problem=verdict.problem,
            )
            verdicts.append(verdict.kind)
            if verdict.rejected:
                problems.append(f"choice {index}: {verdict.problem}"[:_PROBLEM_CHARS])
            elif verdict.kind == "repaired" and verdict.text is not None:
                set_text(verdict.text)
        headers = [*response.headers, (VERDICT_HEADER, ",".join(verdicts).encode()), *extra_headers]
        if problems:
            relaxed = plan is not None and plan.mode == "relaxed"
            if relaxed:
                _count_grammar(
                    "rejected_after_resampling", path=path, request_id=request_id, attempts=attempts
                )
            message = _withheld_message(
                problems, "unchecked" in verdicts, backend, plan if relaxed else None, attempts
            )
            await _send_json(send, 502, _error_body(message, 502), headers)
        elif "repaired" in verdicts:
            await _send_json(send, 200, json.dumps(answer).encode(), headers)
        else:
            await _send_json(send, 200, response.body, headers)


async def _judged(
    response: _BufferedResponse, schema: dict[str, Any] | bool
) -> tuple[dict[str, Any], list[Any], list[AnswerVerdict]] | None:
    """(answer, each choice's text and setter, verdicts), or None when the response is not a
    completion (vLLM's own errors), which passes unchanged."""
    try:
        answer = json.loads(response.body) if response.status == 200 else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
        return None
    texts = [_choice_text(choice) for choice in answer["choices"]]
    verdicts = await _judge_off_loop(
        [
            (text, choice.get("finish_reason"))
            for (text, _), choice in zip(texts, answer["choices"])
        ],
        schema,
    )
    return answer, texts, verdicts


def _grammar_kind(plan: GrammarPlan) -> str:
    return "relaxed" if plan.mode == "relaxed" else "rewritten" if plan.rewrites else "exact"


def _resamplable(verdicts: list[AnswerVerdict], request: dict[str, Any]) -> bool:
    """Whether sampling again can help: an answer broke its schema (not `unchecked`, which a
    retry never fixes) and the request samples (temperature 0 gives the same answer again)."""
    if not any(v.kind in ("schema_violation", "invalid_json") for v in verdicts):
        return False
    temperature = request.get("temperature")
    return not (isinstance(temperature, (int, float)) and temperature == 0)


def _time_for_another(elapsed_s: float, slowest_s: float) -> bool:
    """Whether another generation as slow as the slowest so far fits in the request's time
    limit (the spec's runtime.request_timeout_s, enforced outside this middleware)."""
    try:
        limit_s = float(os.environ.get(REQUEST_TIMEOUT_ENV) or "inf")
    except ValueError:
        limit_s = float("inf")
    return elapsed_s + slowest_s < limit_s


def _reseeded(request: dict[str, Any], grammar_schema: Any, attempt: int) -> dict[str, Any]:
    """The request for the next generation: the relaxed grammar, and a new seed when the
    request fixed one (without one, vLLM draws a new one anyway)."""
    again = _with_grammar_schema(request, grammar_schema)
    if isinstance(request.get("seed"), int) and not isinstance(request["seed"], bool):
        again["seed"] = (request["seed"] + attempt) % 2**63
    return again


def _with_grammar_schema(request: dict[str, Any], schema: Any) -> dict[str, Any]:
    """The request with `schema` in the place requested_schema read it from."""
    again = dict(request)
    response_format = request.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        json_schema = response_format.get("json_schema")
        again["response_format"] = {
            **response_format,
            "json_schema": {
                **(json_schema if isinstance(json_schema, dict) else {}),
                "schema": schema,
            },
        }
    elif isinstance(request.get("structured_outputs"), dict) and (
        request["structured_outputs"].get("json") is not None
    ):
        again["structured_outputs"] = {**request["structured_outputs"], "json": schema}
    return again


def _with_content_length(
    headers: list[tuple[bytes, bytes]], length: int
) -> list[tuple[bytes, bytes]]:
    return [
        *((k, v) for k, v in headers if k.lower() != b"content-length"),
        (b"content-length", str(length).encode()),
    ]


def _any_whitespace(scope: Scope) -> bool:
    """The opposite of the server's disable_any_whitespace (how vLLM compiles grammars)."""
    state = getattr(scope.get("app"), "state", None)
    config = getattr(getattr(state, "vllm_config", None), "structured_outputs_config", None)
    return not getattr(config, "disable_any_whitespace", False)


async def _plan_off_loop(schema: Any, any_whitespace: bool) -> GrammarPlan | None:
    """The guidance plan for `schema`, compiled in a worker thread (llguidance can take a
    while on a large schema; plans are cached per schema); None without llguidance (vLLM then
    compiles, or refuses, the schema as sent)."""
    try:
        return await asyncio.get_running_loop().run_in_executor(
            _worker(), functools.partial(plan_for_guidance, schema, any_whitespace=any_whitespace)
        )
    except ImportError:  # pragma: no cover - the guidance backend always has llguidance
        return None


def _count_grammar(event: str, **fields: Any) -> None:
    grammar_events[event] += 1
    if _grammar_metric is not None:
        _grammar_metric.labels(event=event).inc()
    logger.warning(
        "structured output grammar %s",
        event,
        extra={
            "event": "structured_grammar",
            "grammar_event": event,
            **fields,
            "grammar_events": dict(grammar_events),
        },
    )


def _truncation_hint(
    request: dict[str, Any], schema: Any, verdicts: list[AnswerVerdict]
) -> str | None:
    """For an answer cut at the model's context because the request set no max_tokens: where
    the schema lets the answer grow without bound, and what to set."""
    if not any(v.kind == "incomplete" for v in verdicts):
        return None
    if request.get("max_tokens") is not None or request.get("max_completion_tokens") is not None:
        return None
    where = unbounded_part(schema)
    if where is None:
        return None
    return (
        f"the answer was cut (finish_reason length) at the context limit: the request sets "
        f"no max_tokens and the schema allows {where}; set max_tokens to the longest answer "
        f"you expect, or bound the schema (maxLength, maxItems, maxProperties)"
    )


def unbounded_part(schema: Any, where: str = "#", depth: int = 0) -> str | None:
    """The first place (e.g. "an unbounded string at #/properties/notes") where `schema` lets
    an answer grow without limit, or None. Local references are followed a few levels."""
    if depth > 32:
        return None
    if schema is True or schema == {}:
        return f"any value at {where}"
    if not isinstance(schema, dict) or "const" in schema or "enum" in schema:
        return None
    declared = schema.get("type")
    types = {declared} if isinstance(declared, str) else set(declared or ())
    if "string" in types and "maxLength" not in schema:
        return f"an unbounded string at {where}"
    if "array" in types and "maxItems" not in schema:
        return f"an unbounded array at {where}"
    if (
        "object" in types
        and "maxProperties" not in schema
        and schema.get("additionalProperties", True) is not False
        and "properties" not in schema
    ):
        return f"an object with any number of properties at {where}"
    subschemas = [
        (f"{where}/properties/{key}", sub) for key, sub in (schema.get("properties") or {}).items()
    ]
    for keyword in ("items", "additionalProperties"):
        if isinstance(schema.get(keyword), dict):
            subschemas.append((f"{where}/{keyword}", schema[keyword]))
    for keyword in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(schema.get(keyword), list):
            subschemas += [(f"{where}/{keyword}/{i}", sub) for i, sub in enumerate(schema[keyword])]
    for sub_where, sub in subschemas:
        found = unbounded_part(sub, sub_where, depth + 1)
        if found is not None:
            return found
    return None


_checker: ThreadPoolExecutor | None = None


async def _judge_off_loop(
    choices: list[tuple[str | None, str | None]], schema: dict[str, Any] | bool
) -> list[AnswerVerdict]:
    """Every choice's verdict, computed in a worker thread within VALIDATION_BUDGET_S in all:
    the event loop keeps serving /health and other requests meanwhile."""

    def judge_all() -> list[AnswerVerdict]:
        deadline = time.monotonic() + VALIDATION_BUDGET_S  # from the start, not the queueing
        return [
            judge_answer(text, schema, reason, budget_s=max(deadline - time.monotonic(), 0.001))
            for text, reason in choices
        ]

    return await asyncio.get_running_loop().run_in_executor(_worker(), judge_all)


def _worker() -> ThreadPoolExecutor:
    """The guard's worker threads (checks and grammar plans), started on first use."""
    global _checker
    if _checker is None:
        _checker = ThreadPoolExecutor(_CHECK_THREADS, thread_name_prefix="liftdeploy-guard")
    return _checker


def _withheld_message(
    problems: list[str],
    unchecked: bool,
    backend: str | None,
    relaxed: GrammarPlan | None = None,
    attempts: int = 1,
) -> str:
    """The 502 text: what was wrong, and the one next step that helps."""
    if relaxed is not None and not unchecked:
        return (
            "the model's answers did not match the requested JSON schema and were withheld "
            f"after {attempts} attempt{'s' if attempts > 1 else ''} "
            f"({'; '.join(problems)}); the grammar for this schema is relaxed (the guard "
            f"alone enforces {', '.join(relaxed.enforced_by_guard) or 'some keywords'}): "
            "retry, or rewrite those keywords into ones the grammar enforces (`liftdeploy "
            "schema-check` lists them)"
        )
    if unchecked:
        return (
            "the model's answer could not be checked against the requested JSON schema and "
            f"was withheld ({'; '.join(problems)}); a retry will not help: simplify the "
            "schema (`liftdeploy schema-check` names what is unsupported)"
        )
    advice = "retry the request (answers are sampled)"
    if backend == "xgrammar":
        advice += (
            "; the guidance backend avoids most of these "
            "(engine.structured_output_backend: guidance)"
        )
    return (
        "the model's answer does not match the requested JSON schema and was withheld "
        f"({'; '.join(problems)}); {advice}"
    )


def _backend(scope: Scope) -> str | None:
    """The grammar backend of the vLLM server this guard runs in (its app state's config)."""
    state = getattr(scope.get("app"), "state", None)
    config = getattr(getattr(state, "vllm_config", None), "structured_outputs_config", None)
    backend = getattr(config, "backend", None)
    return backend if isinstance(backend, str) else None


def _true(value: Any) -> bool:
    """A request flag as vLLM's pydantic models read it: "false", "0", "no" and "off" are
    false, not truthy strings."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "t", "yes", "y", "on")
    return bool(value)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # client went away; vLLM sees an empty body and the disconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _sends_json(scope: Scope) -> bool:
    """JSON body, or no content-type at all (FastAPI then parses the body as JSON too)."""
    types = [
        value.lower() for name, value in scope.get("headers", []) if name.lower() == b"content-type"
    ]
    return not types or any(b"json" in value for value in types)


def _refuse_unguarded_constraint(request: dict[str, Any]) -> None:
    """JSON-constrained generation on other endpoints (/v1/responses text.format, Anthropic
    /v1/messages output_config, Cohere response_format...) would bypass the check: refuse it."""

    def field(*keys: str) -> Any:
        value: Any = request
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    if (
        field("response_format", "type") in ("json_schema", "json_object")
        or field("text", "format", "type") in ("json_schema", "json_object")
        or field("output_config", "format")
        or field("structured_outputs")
        or any(request.get(name) is not None for name in LEGACY_FIELDS)
    ):
        raise GuardRefusal(
            "JSON-constrained output is served, and checked against its schema, on "
            f"{' and '.join(GUARDED_PATHS)} only; send the request there"
        )


def _client_validates(scope: Scope) -> bool:
    """Whether the caller opted in to validating a streamed constrained answer itself (sent by
    liftdeploy.client's streaming calls, which raise on an incomplete or invalid answer)."""
    return any(name.lower() == CLIENT_VALIDATES_HEADER for name, _ in scope.get("headers", []))


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the already-read body to the app, then waits on the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _BufferedResponse:
    """Collects the app's response so it can be checked before anything reaches the client."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []
        self._trailers: list[Message] = []

    @property
    def body(self) -> bytes:
        return b"".join(self._chunks)

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return None

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            self._chunks.append(message.get("body", b""))
        else:
            self._trailers.append(message)

    async def replay(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})
        for message in self._trailers:
            await send(message)
