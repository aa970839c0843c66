"""The spec: one declarative ModelDeployment, its YAML file, its catalog, its schema and docs.

`model` holds the pydantic models (validation next to each field), built from `specmodel` (the
base class), `names` (name rules), `sections`, `environments` (overlays, per-environment names)
and `policy` (checks across sections, advisories); `argv` reads vLLM's flags, `specfile` reads
and writes spec files (line numbers in errors, comment-keeping `set`, version migrations),
`messages` turns validation errors into one line, `catalog` reads the GPU and model data in
`data/`, `docs` generates the JSON schema and docs/spec-reference.md. This part imports no other
part of liftdeploy (only `errors` and `versions`): everything else builds on it.
"""

from liftdeploy._lazy import lazy_exports

_EXPORTS = {
    "ModelDeployment": "liftdeploy.spec.model",
    "ResolvedDeployment": "liftdeploy.spec.model",
    "advisories": "liftdeploy.spec.model",
    "SPEC_VERSION": "liftdeploy.spec.model",
    "load_spec": "liftdeploy.spec.specfile",
    "parse_yaml": "liftdeploy.spec.specfile",
    "set_values": "liftdeploy.spec.specfile",
    "dump_yaml": "liftdeploy.spec.specfile",
    "MIGRATIONS": "liftdeploy.spec.specfile",
    "schema_text": "liftdeploy.spec.docs",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
