"""How a render stops on a problem: one plain line through Copier, never a traceback.

Copier prints a `UserMessageError` as its message and removes the directory it was creating, for
`copier copy` and `liftdeploy render` alike.
"""

from __future__ import annotations

from typing import NoReturn


def stop_render(message: str) -> NoReturn:
    """Stop Copier with one plain line (it removes the directory it was creating)."""
    from copier.errors import UserMessageError

    raise UserMessageError(message)
