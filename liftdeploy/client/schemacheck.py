"""Will the server accept this JSON schema? Checked locally with the backends' own compilers.

`check_schema(schema, backend)` compiles a schema the way vLLM 0.32 does before it accepts a
request, so a refusal can be reported before anything is sent:

- xgrammar: vLLM first refuses schema features that XGrammar would silently ignore or get wrong
  (its `has_xgrammar_unsupported_json_features`; the same rules are written out here because the
  client runs without vLLM), then compiles with `xgrammar.Grammar.from_json_schema`;
- guidance: the service's own plan (liftdeploy.runtime.schema_rewrite.plan_for_guidance):
  served exactly (as sent, or after an exact rewrite), served relaxed (llguidance's lenient
  grammar; the guard enforces the keywords it ignores and resamples an answer that breaks
  them), or refused with the reason and the change that would make the schema servable;
- either way, a reference outside the schema (`$ref`/`$dynamicRef` to a URL or another file) is
  refused, as the service's guard refuses it (400), and nothing is ever fetched;
- either way, the service's guard must be able to check answers against the schema: a schema
  that `jsonschema` cannot evaluate (a `$ref` that loops back to itself, say) or cannot evaluate
  within the guard's time budget would have every answer withheld, so it is unsupported too.

The compilers are an optional extra (`pip install liftdeploy[schemacheck]`) imported only when a
check runs. tests/test_schemacheck.py compares these answers with a running server's on the
JSONSchemaBench sample and lists where they differ.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from liftdeploy.errors import LiftdeployError, first_line

BACKENDS = ("xgrammar", "guidance")

# Formats XGrammar 0.2.8 enforces; vLLM refuses a string with any other format under xgrammar.
XGRAMMAR_STRING_FORMATS = frozenset(
    {
        "email",
        "date",
        "time",
        "date-time",
        "duration",
        "ipv4",
        "ipv6",
        "hostname",
        "uuid",
        "uri",
        "uri-reference",
        "uri-template",
        "json-pointer",
        "relative-json-pointer",
    }
)


class SchemaCheckError(LiftdeployError):
    """A schema check cannot run (unknown backend, compiler not installed, unreadable schema)."""

    exit_code = 2  # 1 means "a schema is unsupported"


@dataclass(frozen=True)
class SchemaSupport:
    """One backend's answer for one schema."""

    backend: str
    supported: bool
    reason: str | None = None
    """Why the backend refuses the schema (the unsupported feature), None when supported."""
    served: str | None = None
    """guidance: exact | relaxed | refused (None for xgrammar: supported or not)."""
    enforced_by_guard: tuple[str, ...] = ()
    """Relaxed: the keywords the grammar ignores and the guard alone enforces."""
    rewrites: tuple[str, ...] = ()
    """The exact rewrites the service makes before compiling."""

    @property
    def summary(self) -> str:
        """One line: supported (how) or unsupported (why)."""
        if not self.supported:
            return f"unsupported: {self.reason}"
        if self.served == "relaxed":
            return (
                f"supported, relaxed: the guard enforces {', '.join(self.enforced_by_guard)} "
                "(answers that break them are resampled)"
            )
        if self.rewrites:
            return f"supported, exact after {len(self.rewrites)} rewrite(s): {self.rewrites[0]}"
        return "supported"

    def to_dict(self) -> dict[str, Any]:
        fields = asdict(self)
        return {
            **fields,
            "enforced_by_guard": list(self.enforced_by_guard),
            "rewrites": list(self.rewrites),
            "summary": self.summary,
        }


def check_schema(
    schema: dict[str, Any] | bool | str, backend: str, *, any_whitespace: bool = False
) -> SchemaSupport:
    """Whether `backend` (xgrammar or guidance) serves `schema`, and if not, why.

    `any_whitespace` is the opposite of the spec's `engine.disable_any_whitespace` (default
    True): XGrammar compiles some schemas only one way.
    """
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as err:
            raise SchemaCheckError(
                f"the schema is not valid JSON ({err}); pass a JSON object"
            ) from err
    if backend not in BACKENDS:
        raise SchemaCheckError(
            f"unknown structured-output backend {backend!r}; choose one of {', '.join(BACKENDS)}"
        )
    reason = _guard_refusal(schema)
    if reason is None and backend == "xgrammar":
        reason = _xgrammar_refusal(schema, any_whitespace)
    elif reason is None:
        return _guidance_support(schema, any_whitespace)
    return SchemaSupport(
        backend, reason is None, reason, "refused" if backend == "guidance" else None
    )


def check_schema_all(
    schema: dict[str, Any] | bool | str, *, any_whitespace: bool = False
) -> list[SchemaSupport]:
    """The answer of every backend for `schema`."""
    return [check_schema(schema, backend, any_whitespace=any_whitespace) for backend in BACKENDS]


def _import(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise SchemaCheckError(
            f"the schema check for this backend needs the {module} package; install it with "
            f"pip install 'liftdeploy[schemacheck]'"
        ) from err


# One answer of each JSON type: a schema the guard cannot evaluate fails on some of them.
_PROBES: tuple[str, ...] = ("null", "true", "0", "0.5", '""', "[]", "{}", '{"a": [{}]}')


def _guard_refusal(schema: Any) -> str | None:
    """Why the service's guard would refuse this schema (a reference outside it) or could not
    check answers to it, or None."""
    from liftdeploy.runtime.guard import VALIDATION_BUDGET_S, judge_answer, remote_reference_problem

    remote = remote_reference_problem(schema)
    if remote is not None:
        return remote
    for probe in _PROBES:
        verdict = judge_answer(probe, schema, "stop", budget_s=VALIDATION_BUDGET_S)
        if verdict.kind == "unchecked":
            return (
                f"the service's guard cannot check answers to it ({verdict.problem}), so "
                f"every answer would be withheld"
            )
    return None


def _xgrammar_refusal(schema: Any, any_whitespace: bool) -> str | None:
    if isinstance(schema, dict):
        feature = xgrammar_unsupported_feature(schema)
        if feature is not None:
            return f"xgrammar does not support {feature} (vLLM refuses it before compiling)"
    try:
        # The full compile, as the engine does it after accepting the request: some schemas
        # pass vLLM's up-front check and then fail here (the server answers 500).
        _xgrammar_compiler().compile_json_schema(json.dumps(schema), any_whitespace=any_whitespace)
    except Exception as err:  # noqa: BLE001 - the compiler raises plain RuntimeError/ValueError
        return f"xgrammar cannot compile the schema: {_first_line(err)}"
    return None


@functools.cache
def _xgrammar_compiler() -> Any:
    """A compiler over a byte-level vocabulary: grammar compilation does not depend on the
    model's tokens, and this needs no tokenizer download. Its cache stays on, as in vLLM: some
    schemas fail only on that path (XGrammar 0.2.8, grammar_functor.cc per_rule_fsm_hashes)."""
    xgrammar = _import("xgrammar")
    return xgrammar.GrammarCompiler(xgrammar.TokenizerInfo([bytes([b]) for b in range(256)]))


def _guidance_support(schema: Any, any_whitespace: bool) -> SchemaSupport:
    _import("llguidance")
    from liftdeploy.runtime.schema_rewrite import plan_for_guidance

    plan = plan_for_guidance(schema, any_whitespace=any_whitespace)
    return SchemaSupport(
        "guidance",
        plan.mode != "refused",
        plan.problem,
        plan.mode,
        plan.enforced_by_guard,
        plan.rewrites,
    )


def _first_line(error: object) -> str:
    """The message's first line without XGrammar's "[hh:mm:ss] file.cc:123: " prefix."""
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", first_line(error))


def xgrammar_unsupported_feature(schema: dict[str, Any]) -> str | None:
    """The first feature vLLM 0.32 refuses under xgrammar before compiling (it mirrors vLLM's
    `has_xgrammar_unsupported_json_features`, each rule tracked by an XGrammar issue), or None."""
    types = _types(schema)
    if types & {"integer", "number"} and "multipleOf" in schema:
        return "multipleOf on numbers"
    if "array" in types:
        for keyword in ("uniqueItems", "contains", "minContains", "maxContains"):
            if keyword in schema:
                return f"{keyword} on arrays"
    if "string" in types:
        if "format" in schema and (
            not isinstance(schema["format"], str) or schema["format"] not in XGRAMMAR_STRING_FORMATS
        ):
            return f"string format {schema['format']!r}"
        if _pattern_with_length(schema):
            return "pattern/format together with minLength/maxLength on strings"
    if "object" in types and "propertyNames" in schema:
        names = schema["propertyNames"]
        if isinstance(names, dict) and _pattern_with_length(names):
            return "propertyNames with pattern/format and a length bound"
        for keyword in ("patternProperties", "properties"):
            if keyword in schema:
                return f"propertyNames together with {keyword}"
        if schema.get("unevaluatedProperties", True) is not True:
            return "propertyNames together with unevaluatedProperties"
    if "object" in types and isinstance(schema.get("patternProperties"), dict):
        if "properties" in schema:
            return "patternProperties together with properties"
        if len(schema["patternProperties"]) > 1:
            return "more than one patternProperties entry"
    if isinstance(schema.get("allOf"), list) and len(schema["allOf"]) >= 2:
        return "allOf with two or more branches"
    for value in schema.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict) and (feature := xgrammar_unsupported_feature(item)):
                return feature
    return None


def _types(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {item for item in declared if isinstance(item, str)}
    return set()


def _pattern_with_length(schema: dict[str, Any]) -> bool:
    return ("pattern" in schema or "format" in schema) and (
        "minLength" in schema or "maxLength" in schema
    )
