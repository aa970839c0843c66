"""The one escaping path: how every spec value is written into a generated file.

`app.py` is code that `modal deploy` imports where the deploy token lives, so no spec value
reaches it as raw text: values become literals through `py` (repr's escaping), text in the
module docstring goes through `docstring_text` and text in a comment through `comment_text`.
`python_module` then refuses the whole file unless it compiles. The template reaches these as
the filters `py`, `docstring`, `comment` and `python_module` (liftdeploy.render.copier_ext).
"""

from __future__ import annotations

from typing import Any

from liftdeploy.render.stop import stop_render


def py(value: Any, indent: int = 0) -> str:
    """A Python literal for plain data, strings in double quotes as in Modal's examples; dicts
    and lists that would make a long line are written one item per line."""
    if isinstance(value, str):
        # JSON inside a string reads better without escapes
        quote = "'" if '"' in value and "'" not in value else '"'
        return quote + _escaped(value, quote) + quote
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        items = [py(v, indent + 4) for v in value]
        brackets = "[]"
    elif isinstance(value, dict):
        items = [f"{py(k)}: {py(v, indent + 4)}" for k, v in value.items()]
        brackets = "{}"
    else:
        raise TypeError(f"no Python literal for {type(value).__name__}")
    one_line = brackets[0] + ", ".join(items) + brackets[1]
    if len(one_line) + indent <= 72 or not items:
        return one_line
    pad = " " * (indent + 4)
    lines = "".join(f"\n{pad}{item}," for item in items)
    return brackets[0] + lines + f"\n{' ' * indent}" + brackets[1]


def _escaped(text: str, quotes: str, *, keep: str = "") -> str:
    """repr's escaping: backslashes, the given quote characters and every character that is not
    printable (newlines, U+2028 and other line separators, controls, bidi overrides) become
    escape sequences; characters in `keep` stay as they are."""
    out = []
    for char in text:
        if char == "\\" or char in quotes:
            out.append("\\" + char)
        elif char.isprintable() or char in keep:
            out.append(char)
        else:
            out.append(repr(char)[1:-1])
    return "".join(out)


def docstring_text(text: str) -> str:
    """Text for inside a (non-raw) triple-quoted docstring: its lines stay lines, while every
    quote and backslash is escaped, so nothing in it can end the docstring or form an escape."""
    return _escaped(str(text), '"', keep="\n")


def comment_text(text: str) -> str:
    """Text for after a `#`: one line, whatever it holds (line breaks written as escapes)."""
    return _escaped(str(text), "")


def python_module(source: str, filename: str = "app.py") -> str:
    """The rendered module itself, unless it does not compile: then the render stops with the
    reason and nothing is written (Copier removes what it was creating)."""
    try:
        compile(source, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        where = f", line {exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else ""
        stop_render(
            f"the rendered {filename} would not be valid Python ({exc.args[0]}{where}); "
            "this is a liftdeploy bug, please report it with the spec. "
            "Nothing was written."
        )
    return source
