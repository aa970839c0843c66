"""What the deployed container needs from liftdeploy: standard library (and vLLM's own
dependencies) only, no pydantic.

A rendered service carries copies of these modules in `liftdeploy_runtime/` (the server process
wrapper, the weights check and every middleware its argv names) and its image adds them on
PYTHONPATH, so deploying needs only `modal`, not liftdeploy.
"""
