"""Operations: what is done to a deployed service, on Modal and over HTTP.

`modal_commands` builds the `modal` CLI commands (deploy, download, rollback, logs, history,
stop) and `modal_runner` runs them; `deploy_policy` checks a deploy before it runs (pinned weights,
a fresh render, a committed tree: `git_state`), `history` reads Modal's deployment history and
`status` compares it with the checkout; `pinning` pins model revisions to Hub commits;
`modal_sdk` uses modal's SDK (bootstrap of Volumes, Dicts and Secrets), `http` runs warmup, smoke
and load tests through the client, `audit` finds hard-coded endpoint URLs in a codebase. `spend`
holds Modal's billing report (`billing`) and vLLM's token counter (`tokens`) against the plan
and the budget. It may
import the spec, planner, render and client parts; modal only inside functions.
"""

from liftdeploy._lazy import lazy_exports

_EXPORTS = {
    "bootstrap": "liftdeploy.ops.modal_sdk",
    "deploy_command": "liftdeploy.ops.modal_commands",
    "rollback_command": "liftdeploy.ops.modal_commands",
    "logs_command": "liftdeploy.ops.modal_commands",
    "prepare_deploy": "liftdeploy.ops.deploy_policy",
    "warmup": "liftdeploy.ops.http",
    "smoke": "liftdeploy.ops.http",
    "loadtest": "liftdeploy.ops.http",
    "audit": "liftdeploy.ops.audit",
    "spend_report": "liftdeploy.ops.spend",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
