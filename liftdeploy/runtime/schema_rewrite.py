"""What llguidance compiles for a requested JSON schema: the schema itself, an exact rewrite of
it, or a relaxed grammar whose answers the guard judges against the schema the client sent.

1. Exact rewrites (`exact_rewrites`), each meaning-preserving under the guard's validator
   (tests/test_schema_rewrites.py checks every one on generated instances):
   - a `format` llguidance does not know is dropped (the guard treats `format` as an
     annotation, so it never constrained answers);
   - `dependencies` / `dependentRequired` / `dependentSchemas` become an `anyOf` of "the key
     is absent" (`properties: {key: false}`) and "the key and its dependants are present"
     (`required`, plus the dependent schema), which llguidance compiles;
   - `oneOf` becomes `anyOf` when its branches provably cannot overlap (different JSON types,
     disjoint `const`/`enum` values, disjoint numeric ranges, a required property whose
     `const`/`enum` values differ): then "exactly one" and "at least one" are the same;
   - next to a `$ref`, annotations are dropped, and under drafts 3-7 every sibling (those
     drafts ignore them; llguidance refuses recursive references with siblings).
2. `plan_for_guidance` compiles the result strictly; if llguidance still refuses it, it
   compiles it with llguidance's `lenient` option (set in the schema's `x-guidance`, which
   vLLM's guidance backend passes through: options apply defaults -> x-guidance -> overrides)
   and names the keywords llguidance then ignores: the guard enforces them, resampling an
   answer that breaks them. A schema that fails even then is refused with the change that
   would make it servable.

llguidance is imported only when a plan is made (it ships with vLLM; the client's
`schemacheck` extra installs it).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
LEGACY_REF_DRAFTS = ("draft-03", "draft-04", "draft-06", "draft-07")
"""Drafts in which every keyword next to a `$ref` is ignored."""
_RESOLUTION_KEYWORDS = frozenset(
    {"$ref", "$schema", "$id", "id", "definitions", "$defs", "$anchor", "$dynamicAnchor"}
)
"""Kept next to a `$ref`: they say where references lead, not what an answer may be."""
_SINGLE_SUBSCHEMA = (
    "additionalProperties",
    "additionalItems",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contentSchema",
    "items",
)
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "definitions", "$defs", "dependentSchemas")
_JSON_TYPES = ("null", "boolean", "object", "array", "string", "number")


@dataclass(frozen=True)
class GrammarPlan:
    """How a schema is served by the guidance backend."""

    mode: str
    """exact | relaxed | refused"""
    schema: Any
    """What vLLM is given to compile (None when refused)."""
    rewrites: tuple[str, ...] = ()
    """The exact rewrites applied, e.g. "oneOf -> anyOf at #/properties/a"."""
    enforced_by_guard: tuple[str, ...] = ()
    """Relaxed: what the grammar ignores and only the guard checks (keywords, formats)."""
    problem: str | None = None
    """Refused: why, and the change that would make the schema servable."""

    @property
    def changed(self) -> bool:
        return self.mode == "relaxed" or bool(self.rewrites)


# ---- exact rewrites ------------------------------------------------------------------------


def exact_rewrites(schema: Any) -> tuple[Any, list[str]]:
    """A schema accepting exactly the instances `schema` accepts (under the guard's validator)
    in a form llguidance compiles more often, and the rewrites applied. `schema` is not changed."""
    if not isinstance(schema, dict):
        return schema, []
    rewriter = _Rewriter(schema)
    return rewriter.rewrite(copy.deepcopy(schema), "#"), rewriter.applied


class _Rewriter:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        declared = root.get("$schema")
        self.legacy_refs = isinstance(declared, str) and any(
            d in declared for d in LEGACY_REF_DRAFTS
        )
        self.applied: list[str] = []

    def rewrite(self, node: Any, where: str) -> Any:
        if not isinstance(node, dict):
            return node
        for keyword in _SUBSCHEMA_MAPS:
            if isinstance(node.get(keyword), dict):
                node[keyword] = {
                    key: self.rewrite(sub, f"{where}/{keyword}/{key}")
                    for key, sub in node[keyword].items()
                }
        for keyword in _SINGLE_SUBSCHEMA:
            if isinstance(node.get(keyword), dict):
                node[keyword] = self.rewrite(node[keyword], f"{where}/{keyword}")
        for keyword in _SUBSCHEMA_LISTS:
            if isinstance(node.get(keyword), list):
                node[keyword] = [
                    self.rewrite(sub, f"{where}/{keyword}/{i}")
                    for i, sub in enumerate(node[keyword])
                ]
        if isinstance(node.get("dependencies"), dict):
            node["dependencies"] = {
                key: self.rewrite(sub, f"{where}/dependencies/{key}")
                for key, sub in node["dependencies"].items()
            }
        if "$ref" in node and len(node) > 1:
            self._ref_siblings(node, where)
        if isinstance(node.get("format"), str) and not llguidance_knows_format(node["format"]):
            self.applied.append(
                f"unknown format {node.pop('format')!r} dropped at {where} (an annotation)"
            )
        self._dependencies(node, where)
        if isinstance(node.get("oneOf"), list) and _pairwise_disjoint(node["oneOf"], self.root):
            branches = node.pop("oneOf")
            if "anyOf" in node:  # the schema's own anyOf still applies beside the branches
                node["allOf"] = [*node.get("allOf", []), {"anyOf": branches}]
            else:
                node["anyOf"] = branches
            self.applied.append(f"oneOf -> anyOf at {where} (branches cannot overlap)")
        return node

    def _ref_siblings(self, node: dict[str, Any], where: str) -> None:
        dropped = [
            k
            for k in node
            if k not in _RESOLUTION_KEYWORDS and (self.legacy_refs or k in ANNOTATIONS)
        ]
        for key in dropped:
            del node[key]
        if dropped:
            reason = "ignored next to $ref in this draft" if self.legacy_refs else "annotations"
            self.applied.append(f"{', '.join(dropped)} next to $ref dropped at {where} ({reason})")

    def _dependencies(self, node: dict[str, Any], where: str) -> None:
        conditions = []
        for keyword in ("dependencies", "dependentRequired", "dependentSchemas"):
            entries = node.get(keyword)
            if not isinstance(entries, dict):
                continue
            for key, dependant in entries.items():
                present: dict[str, Any]
                if isinstance(dependant, list) and all(isinstance(d, str) for d in dependant):
                    present = {"required": [key, *dependant]}
                elif isinstance(dependant, (dict, bool)) and keyword != "dependentRequired":
                    present = {"required": [key], "allOf": [dependant]}
                else:
                    return  # malformed: leave it for llguidance and the guard to report
                conditions.append({"anyOf": [{"properties": {key: False}}, present]})
        if not conditions:
            return
        for keyword in ("dependencies", "dependentRequired", "dependentSchemas"):
            if node.pop(keyword, None) is not None:
                self.applied.append(f"{keyword} -> anyOf of absent/required at {where}")
        node["allOf"] = [*node.get("allOf", []), *conditions]


@functools.cache
def llguidance_knows_format(name: str) -> bool:
    """Whether llguidance enforces this string `format` (else it refuses the schema)."""
    error, _ = _compile({"type": "string", "format": name}, any_whitespace=False)
    return error is None or "format" not in error.lower()


# ---- oneOf disjointness --------------------------------------------------------------------


@dataclass
class _Facts:
    types: frozenset[str] | None = None
    """JSON types the branch can accept (integer counted as number); None: any."""
    values: list[Any] | None = None
    """const/enum: the only values accepted; None: not limited."""
    low: tuple[float, bool] | None = None
    high: tuple[float, bool] | None = None
    """(bound, exclusive) of the numbers accepted."""
    discriminators: dict[str, list[Any]] = field(default_factory=dict)
    """Required property -> the only values it may take."""


def _pairwise_disjoint(branches: list[Any], root: dict[str, Any]) -> bool:
    facts = [_facts(branch, root) for branch in branches]
    if len(branches) < 2 or any(f is None for f in facts):
        return False
    return all(_disjoint(a, b) for i, a in enumerate(facts) for b in facts[i + 1 :])  # type: ignore[arg-type]


def _resolve(branch: Any, root: dict[str, Any]) -> Any:
    """A branch that is only a local `#/...` reference (plus annotations), followed."""
    for _ in range(16):
        if not (isinstance(branch, dict) and isinstance(branch.get("$ref"), str)):
            return branch
        if set(branch) - ANNOTATIONS - {"$ref"} or not branch["$ref"].startswith("#/"):
            return None
        target: Any = root
        for part in branch["$ref"][2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                return None
            target = target[part]
        branch = target
    return None


def _facts(branch: Any, root: dict[str, Any]) -> _Facts | None:
    branch = _resolve(branch, root)
    if not isinstance(branch, dict) or "$ref" in branch:
        return None if branch is not False else _Facts(types=frozenset())
    facts = _Facts()
    declared = branch.get("type")
    if isinstance(declared, str):
        declared = [declared]
    if isinstance(declared, list):
        facts.types = frozenset("number" if t == "integer" else t for t in declared)
    if "const" in branch:
        facts.values = [branch["const"]]
    elif isinstance(branch.get("enum"), list):
        facts.values = list(branch["enum"])
    if facts.values is not None:
        value_types = frozenset(_json_type(v) for v in facts.values)
        facts.types = value_types if facts.types is None else facts.types & value_types
    bounds = [
        (branch.get(k), k) for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
    ]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) or v is None for v, _ in bounds):
        lows = [
            (v, k.startswith("exclusive")) for v, k in bounds if v is not None and "inimum" in k
        ]
        highs = [
            (v, k.startswith("exclusive")) for v, k in bounds if v is not None and "aximum" in k
        ]
        # The tightest bound; at equal values the exclusive one is tighter.
        facts.low = max(lows) if lows else None
        facts.high = min(highs, key=lambda b: (b[0], not b[1])) if highs else None
    properties = branch.get("properties") if isinstance(branch.get("properties"), dict) else {}
    for key in branch.get("required", []) if isinstance(branch.get("required"), list) else []:
        sub = _facts(properties.get(key, True), root) if key in properties else None
        if sub is not None and sub.values is not None:
            facts.discriminators[key] = sub.values
    return facts


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "object")


def _same_value(a: Any, b: Any) -> bool:
    """JSON Schema equality (1 == 1.0, true != 1, key order ignored)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _disjoint_values(a: list[Any], b: list[Any]) -> bool:
    return not any(_same_value(x, y) for x in a for y in b)


def _disjoint(a: _Facts, b: _Facts) -> bool:
    if a.types is not None and b.types is not None and not a.types & b.types:
        return True
    if a.values is not None and b.values is not None and _disjoint_values(a.values, b.values):
        return True
    numeric_only = all(f.types is not None and f.types <= {"number"} for f in (a, b))
    if numeric_only and (_below(a.high, b.low) or _below(b.high, a.low)):
        return True
    objects_only = any(f.types == frozenset({"object"}) for f in (a, b))
    return objects_only and any(
        key in b.discriminators and _disjoint_values(values, b.discriminators[key])
        for key, values in a.discriminators.items()
    )


def _below(high: tuple[float, bool] | None, low: tuple[float, bool] | None) -> bool:
    """Whether a range ending at `high` and one starting at `low` share no number."""
    if high is None or low is None:
        return False
    return high[0] < low[0] or (high[0] == low[0] and (high[1] or low[1]))


# ---- compiling -----------------------------------------------------------------------------


def _compile(schema: Any, *, any_whitespace: bool) -> tuple[str | None, list[str]]:
    """(llguidance's error or None, its warnings), compiled as vLLM's guidance backend does."""
    import llguidance

    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            json.dumps(schema), defaults={"whitespace_flexible": any_whitespace}
        )
    except (ValueError, KeyError, TypeError) as err:
        return f"llguidance cannot read the schema: {str(err).strip().splitlines()[0]}", []
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, None)
    if is_error:
        return (messages[0].strip().splitlines()[0] if messages else "unknown error"), []
    return None, list(messages)


def with_lenient(schema: Any) -> Any:
    """The schema with llguidance's `lenient` option (unimplemented keywords ignored) added
    to its `x-guidance` options; the client's own options stay."""
    if not isinstance(schema, dict):
        return schema
    options = schema.get("x-guidance")
    return {
        **schema,
        "x-guidance": {**(options if isinstance(options, dict) else {}), "lenient": True},
    }


_KEYS_WARNING = re.compile(r"Unimplemented keys: \[(.*)\]")


def ignored_keywords(warnings: list[str]) -> tuple[str, ...]:
    """The keywords (and formats) a lenient llguidance grammar ignores, from its warnings."""
    found: list[str] = []
    for warning in warnings:
        keys = _KEYS_WARNING.search(warning)
        if keys:
            names = [name.strip().strip('"') for name in keys.group(1).split(",")]
        elif warning.startswith("Unknown format"):
            names = [f"format {warning.split(':', 1)[1].strip()!r}"]
        elif warning.startswith("oneOf"):
            names = ["oneOf"]
        elif "min/maxProperties" in warning:
            names = ["minProperties/maxProperties"]
        else:
            names = [warning.strip()]
        found += [name for name in names if name and name not in found]
    return tuple(found)


def refusal_advice(error: str) -> str:
    """The change that would make a schema llguidance refuses servable."""
    if "not disjoint" in error:
        return (
            "make the patternProperties patterns disjoint (no property name may match two), "
            "e.g. anchor them: ^name$"
        )
    if "circular references with sibling keys" in error:
        return (
            'keep a recursive "$ref" alone in its object: move the keywords beside it into '
            "the definition it points to"
        )
    if "not present in a registry" in error or "retriev" in error:
        return 'copy the referenced schema under "$defs" and refer to it as "#/$defs/NAME"'
    return "simplify the schema around the keyword named"


def plan_for_guidance(schema: Any, *, any_whitespace: bool = False) -> GrammarPlan:
    """How the guidance backend serves `schema`: exactly (maybe rewritten), relaxed (the guard
    enforces what the grammar ignores), or refused with the reason and the fix."""
    # Not sort_keys: property order is the order the grammar generates them in.
    return _plan_cached(json.dumps(schema), any_whitespace)


@functools.lru_cache(maxsize=256)
def _plan_cached(schema_text: str, any_whitespace: bool) -> GrammarPlan:
    schema = json.loads(schema_text)
    error, _ = _compile(schema, any_whitespace=any_whitespace)
    if error is None:  # what compiles as sent is sent as is
        return GrammarPlan("exact", schema)
    rewritten, rewrites = exact_rewrites(schema)
    if rewrites:
        error, _ = _compile(rewritten, any_whitespace=any_whitespace)
        if error is None:
            return GrammarPlan("exact", rewritten, tuple(rewrites))
    lenient = with_lenient(rewritten)
    lenient_error, warnings = _compile(lenient, any_whitespace=any_whitespace)
    if lenient_error is None and isinstance(schema, dict):
        return GrammarPlan("relaxed", lenient, tuple(rewrites), ignored_keywords(warnings))
    reason = lenient_error or error
    return GrammarPlan(
        "refused",
        None,
        tuple(rewrites),
        (),
        f"llguidance cannot compile the schema, even ignoring the keywords it "
        f"does not implement: {reason}; {refusal_advice(reason)}",
    )
