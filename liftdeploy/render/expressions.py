"""Values that may differ by environment, written as the app module's Python expressions: one
literal when every environment agrees, else a dict indexed by ENVIRONMENT (or ARGV_ENVIRONMENT
for the argv). Every value is written through `py` (liftdeploy.render.literals).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from liftdeploy.render.literals import py


def dict_items(per_env: dict[str, dict[str, str]]) -> str:
    """Items of a dict literal whose values may differ by environment: one line per key, the
    environment's own name written as ENVIRONMENT."""
    keys = list(dict.fromkeys(key for items in per_env.values() for key in items))
    lines = []
    for key in keys:
        values = {env: items.get(key) for env, items in per_env.items()}
        if all(v == env for env, v in values.items()):
            lines.append(f"    {py(key)}: ENVIRONMENT,")
        else:
            lines.append(f"    {py(key)}: {by_environment(values, py, 4)},")
    return "\n".join(lines)


def by_environment(values: dict[str, Any], literal: Callable[..., str], indent: int) -> str:
    first = next(iter(values.values()))
    if all(v == first for v in values.values()):
        return literal(first, indent)
    pad = " " * indent
    items = "".join(f"\n{pad}    {py(env)}: {literal(v, indent + 4)}," for env, v in values.items())
    return "{" + items + f"\n{pad}}}[ENVIRONMENT]"


def duration(seconds: Any, indent: int = 0) -> str:
    if isinstance(seconds, int) and seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60} * MINUTES"
    return py(seconds, indent)


def argv_lines(argv: list[str], constants: dict[str, tuple[str, str]]) -> list[str]:
    """Group a flag with the values that follow it: `"--model", MODEL_ID,` per line, a value
    written as its constant where `constants` (flag -> (value, code)) names one."""
    groups: list[list[str]] = []
    for token in argv:
        if token.startswith("--") or not groups:
            groups.append([token])
        else:
            groups[-1].append(token)
    lines = []
    for group in groups:
        flag, *values = group
        shared = constants.get(flag)
        if shared and values == [shared[0]]:
            lines.append(f"{py(flag)}, {shared[1]},")
        else:
            lines.append(", ".join(py(t) for t in group) + ",")
    return lines


def _list_of_lines(lines: list[str]) -> str:
    """A list literal of argv lines inside the per-environment dict: one line when short."""
    one_line = "[" + " ".join(lines).rstrip(",") + "]"
    if len(one_line) <= 72:
        return one_line
    return "[" + "".join(f"\n            {line}" for line in lines) + "\n        ]"


def merged_lines(per_env: dict[str, list[str]]) -> str:
    """One list literal from each environment's argv lines: the lines every environment has,
    in order, once; between them, what each environment adds as a dict indexed by
    ARGV_ENVIRONMENT and unpacked in place."""
    import difflib

    envs = list(per_env)
    common = per_env[envs[0]]
    for env in envs[1:]:  # the lines all environments share, in argv order
        matcher = difflib.SequenceMatcher(a=common, b=per_env[env], autojunk=False)
        common = [
            line
            for block in matcher.get_matching_blocks()
            for line in common[block.a : block.a + block.size]
        ]
    out: list[str] = []
    positions = {env: 0 for env in envs}
    for line in [*common, None]:
        extra = {}
        for env in envs:
            lines = per_env[env]
            end = lines.index(line, positions[env]) if line is not None else len(lines)
            extra[env] = lines[positions[env] : end]
            positions[env] = end + 1
        if any(extra.values()):
            items = "".join(
                f"\n        {py(env)}: {_list_of_lines(lines)}," for env, lines in extra.items()
            )
            out.append(f"*{{{items}\n    }}[ARGV_ENVIRONMENT],")
        if line is not None:
            out.append(line)
    return "[" + "".join(f"\n    {line}" for line in out) + "\n]"
