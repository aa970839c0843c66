"""Operations: what is done to a deployed service, on Modal and over HTTP.

`modal_cli` builds and runs `modal` CLI commands (deploy, rollback, logs, history, status),
`modal_sdk` uses modal's SDK (bootstrap of Volumes, Dicts and Secrets), `http` runs warmup, smoke
and load tests through the client, `audit` finds hard-coded endpoint URLs in a codebase. `spend`
holds Modal's billing report (`billing`) and vLLM's token counter (`tokens`) against the plan
and the budget. It may
import the spec, planner, render and client parts; modal only inside functions.
"""

from liftdeploy._lazy import lazy_exports

_EXPORTS = {
    "bootstrap": "liftdeploy.ops.modal_sdk",
    "deploy_command": "liftdeploy.ops.modal_cli",
    "rollback_command": "liftdeploy.ops.modal_cli",
    "logs_command": "liftdeploy.ops.modal_cli",
    "prepare_deploy": "liftdeploy.ops.modal_cli",
    "warmup": "liftdeploy.ops.http",
    "smoke": "liftdeploy.ops.http",
    "loadtest": "liftdeploy.ops.http",
    "audit": "liftdeploy.ops.audit",
    "spend_report": "liftdeploy.ops.spend",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
