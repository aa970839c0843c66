"""Placeholder: filled in by the issue that owns these commands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Registers nothing yet."""
