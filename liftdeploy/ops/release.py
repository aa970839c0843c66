"""Safe releases of production: a candidate app beside production, judged, promoted or aborted.

`start` deploys the working tree as `<app>-candidate` (production's overlay, so production's
Secrets and API key; `modal deploy --name` with production's LIFTDEPLOY_ENV, in production's
Modal environment, and LIFTDEPLOY_APP_NAME naming the candidate, so the app mounts every Volume
read-only, deploys no monitor and is tagged as a candidate), waits until it is
healthy and smoke-tests it, then writes the release record with the share into production's
release Dict (`<app>-release`), where every RoutedClient reads it. `status` compares the
candidate with production over the same window (Modal's own counts, see release_verdict).
`promote` deploys production at the candidate's commit (rolling), sets the share to 0 and stops
the candidate; `abort` sets the share to 0 and stops the candidate. Each step is written to the
record before it is taken, so an interrupted promote or abort is finished by running it again;
both are no-ops once done. Every `modal` command is built by a pure function (tests parse them
with modal's own CLI) and run by modal_runner.run_modal.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from liftdeploy.client.endpoints import SERVER_CLASS_NAME
from liftdeploy.client.routing import RELEASE_KEY, ShareStore, candidate_app_name
from liftdeploy.errors import OpsError
from liftdeploy.ops.deploy_policy import prepare_deploy
from liftdeploy.ops.git_state import git_state
from liftdeploy.ops.modal_commands import MODAL, Command, env_args
from liftdeploy.ops.modal_runner import ModalCommandError, run_modal
from liftdeploy.ops.release_verdict import ReleaseVerdict, ReleaseWindow, judge
from liftdeploy.ops.service_files import ServiceFiles
from liftdeploy.ops.status import environment_status
from liftdeploy.spec.model import MAX_APP_NAME, ResolvedDeployment

DONE_PHASES = ("promoted", "aborted")
_GONE = ("App is already stopped", "No App with name", "not found")


def _with_option(argv: list[str], flag: str, value: str) -> list[str]:
    """`argv` with `flag`'s value replaced (the flag must be there)."""
    index = argv.index(flag)
    return [*argv[: index + 1], value, *argv[index + 2 :]]


APP_NAME_ENV = "LIFTDEPLOY_APP_NAME"
"""The app name a deploy runs under, told to the rendered app (and by it to its containers):
under the candidate's name the app mounts every Volume read-only, deploys no monitor and is
tagged `liftdeploy-release: candidate`, so it shares none of production's writable state."""


def _deployed_as(name: str, argv: list[str], deploy: Command) -> Command:
    """`deploy` with `argv`, telling the app the name `--name` deploys it under."""
    return Command(argv, env={**deploy.env, APP_NAME_ENV: name}, cwd=deploy.cwd)


def candidate_deploy_command(resolved: ResolvedDeployment, deploy: Command) -> Command:
    """production's checked deploy command, under the candidate's app name."""
    name = candidate_app_name(resolved)
    if len(name) > MAX_APP_NAME:
        raise OpsError(
            f"the candidate's app name {name!r} is longer than Modal's {MAX_APP_NAME} "
            f"characters; shorten the spec's name"
        )
    return _deployed_as(name, _with_option(deploy.argv, "--name", name), deploy)


def promote_deploy_command(resolved: ResolvedDeployment, deploy: Command) -> Command:
    """production's deploy command, rolling whatever runtime.deploy_strategy says: callers keep
    being served while the candidate's version replaces production's containers. It names
    production's app, so a LIFTDEPLOY_APP_NAME left in the shell never deploys a candidate."""
    return _deployed_as(
        resolved.app_name, _with_option(deploy.argv, "--strategy", "rolling"), deploy
    )


def stop_command(resolved: ResolvedDeployment) -> Command:
    """`modal app stop <app>-candidate --yes`: the candidate's containers end at once."""
    return Command(
        [MODAL, "app", "stop", candidate_app_name(resolved), "--yes", *env_args(resolved)]
    )


def candidate_url(resolved: ResolvedDeployment) -> str:
    """The deployed candidate's URL, from Modal."""
    import modal

    from liftdeploy.ops.modal_sdk import modal_call

    name = candidate_app_name(resolved)
    return modal_call(
        f"looking up the URL of {name}",
        lambda: modal.Server.from_name(
            name, SERVER_CLASS_NAME, environment_name=resolved.modal_environment
        ).get_url(),
    )


def modal_windows(
    resolved: ResolvedDeployment, since: float, until: float
) -> tuple[ReleaseWindow, ReleaseWindow]:
    """(candidate, production) from `modal.Server.stats` over the same window."""
    import modal

    from liftdeploy.ops.modal_sdk import modal_call
    from liftdeploy.ops.release_verdict import window_from_server_stats

    window = {
        "since": datetime.fromtimestamp(since, timezone.utc),
        "until": datetime.fromtimestamp(until, timezone.utc),
    }
    sides = []
    for name in (candidate_app_name(resolved), resolved.app_name):
        server = modal.Server.from_name(
            name, SERVER_CLASS_NAME, environment_name=resolved.modal_environment
        )
        stats = modal_call(f"reading {name}'s request counts", lambda s=server: s.stats(**window))
        sides.append(window_from_server_stats(stats))
    return sides[0], sides[1]


def check_candidate(resolved: ResolvedDeployment, url: str, timeout_s: float) -> None:
    """Wait until the candidate is healthy, then smoke-test it (the same checks as a deploy)."""
    from liftdeploy.client.api import Client
    from liftdeploy.ops.http import smoke, warmup

    client = Client.for_deployment(resolved, url=url)
    warmup(client, timeout_s=timeout_s)
    smoke(client)


class ModalDictStore:
    """production's release Dict, each call's failure an OpsError naming the fix (modal_call)."""

    def __init__(self, resolved: ResolvedDeployment) -> None:
        from liftdeploy.client.routing import open_release_dict, release_dict_name

        self.name = release_dict_name(resolved)
        self._dict = open_release_dict(resolved, create=True)

    def get(self, key: Any, default: Any | None = None) -> Any:
        from liftdeploy.ops.modal_sdk import modal_call

        return modal_call(f"reading Dict {self.name}", lambda: self._dict.get(key, default))

    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        from liftdeploy.ops.modal_sdk import modal_call

        return modal_call(
            f"writing Dict {self.name}",
            lambda: self._dict.put(key, value, skip_if_exists=skip_if_exists),
        )


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


@dataclass
class Release:
    """The release of one service's production. Modal is reached only through `run` (modal CLI
    commands), `store` (the release Dict), `lookup_url`, `probe` and `windows`."""

    service: ServiceFiles
    resolved: ResolvedDeployment
    """production, resolved from the working tree's spec."""
    store: ShareStore
    run: Callable[[Command], Any] = run_modal
    lookup_url: Callable[[ResolvedDeployment], str] = candidate_url
    probe: Callable[[ResolvedDeployment, str, float], None] = check_candidate
    windows: Callable[[ResolvedDeployment, float, float], tuple[ReleaseWindow, ReleaseWindow]] = (
        modal_windows
    )
    pause: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    say: Callable[[str], None] = _stderr
    deployed_commit: Callable[[ResolvedDeployment], str | None] | None = None
    """production's deployed commit (default: `modal app history`)."""
    steps: list[str] = field(default_factory=list)
    """What this run did, in order (for reports and tests)."""

    @property
    def record(self) -> dict[str, Any] | None:
        value = self.store.get(RELEASE_KEY)
        return value if isinstance(value, dict) else None

    def _save(self, **changes: Any) -> dict[str, Any]:
        record = {**(self.record or {}), **changes}
        self.store.put(RELEASE_KEY, record)
        self.steps.append(f"record: phase {record.get('phase')}, share {record.get('share')}")
        return record

    def _run(self, command: Command) -> None:
        self.say(f"$ {command.shell()}")
        self.steps.append(shlex.join(command.argv))
        self.run(command)

    # -- start --------------------------------------------------------------------------------

    def start(
        self,
        *,
        share_percent: float | None = None,
        allow_dirty: bool = False,
        skip_check: bool = False,
        timeout_s: float = 1800.0,
    ) -> dict[str, Any]:
        """Deploy, check and open the candidate; returns the record."""
        record = self.record
        phase = record.get("phase") if record else None
        if phase == "running":
            raise OpsError(
                f"a release of {record.get('tag')} is already running; see `liftdeploy release "
                f"status`, then promote or abort it before starting another"
            )
        if phase in ("promoting", "stopping", "aborting"):
            verb = "promote" if phase != "aborting" else "abort"
            raise OpsError(
                f"a {verb} was interrupted; run `liftdeploy release {verb}` again to "
                f"finish it, then start the next release"
            )
        share = share_percent if share_percent is not None else self.resolved.release.share_percent
        if not 0 < share <= 50:
            raise OpsError(
                f"--share {share:g}% is outside 0..50%; production keeps the larger "
                f"side of the traffic"
            )
        step = prepare_deploy(
            self.service, self.resolved.environment, allow_dirty=allow_dirty, skip_check=skip_check
        )
        for note in step.notes:
            self.say(note)
        command = candidate_deploy_command(self.resolved, step.command)
        self._save(
            phase="starting",
            share=0,
            candidate_app=candidate_app_name(self.resolved),
            commit=step.git.commit if step.git else None,
            tag=step.git.tag if step.git else None,
            candidate_url=None,
            model=self.resolved.model.name_for_clients,
            outcome=None,
        )
        self._run(command)
        url = self.lookup_url(self.resolved)
        try:
            self.probe(self.resolved, url, timeout_s)
        except Exception as exc:
            self.say(f"the candidate failed its checks ({exc}); stopping it")
            self.abort()
            raise OpsError(
                f"the candidate at {url} failed its checks: {exc}; it was stopped "
                f"and production was not touched"
            ) from None
        self.steps.append(f"healthy and smoke-tested: {url}")
        return self._save(
            phase="running", share=share / 100, candidate_url=url, started_at=self.clock()
        )

    # -- status -------------------------------------------------------------------------------

    def status(self) -> tuple[ReleaseWindow, ReleaseWindow, ReleaseVerdict]:
        record = self._running("judge")
        candidate, production = self.windows(
            self.resolved, float(record["started_at"]), self.clock()
        )
        return candidate, production, judge(candidate, production, self.resolved.release)

    def _running(self, verb: str) -> dict[str, Any]:
        record = self.record
        if not record or record.get("phase") != "running" or "started_at" not in record:
            phase = record.get("phase") if record else "none"
            raise OpsError(
                f"no running release to {verb} (release phase: {phase}); start one "
                f"with `liftdeploy release start`"
            )
        return record

    # -- promote and abort --------------------------------------------------------------------

    def promote(self) -> str:
        """Production at the candidate's commit, then the candidate stops. Idempotent."""
        record = self.record
        phase = record.get("phase") if record else None
        if phase == "promoted":
            return f"already promoted ({record.get('tag')}); nothing to do"
        if phase in (None, "aborted", "aborting", "starting"):
            raise OpsError(
                f"no release to promote (phase: {phase or 'none'}); "
                + (
                    "run `liftdeploy release abort` to finish the abort"
                    if phase == "aborting"
                    else "start one with `liftdeploy release start`"
                )
            )
        assert record is not None
        if phase == "running":
            checkout = git_state(self.service.directory)
            if record.get("commit") and (checkout is None or checkout.commit != record["commit"]):
                raise OpsError(
                    f"the candidate runs commit {record['commit'][:7]} but this checkout is "
                    f"{checkout.tag if checkout else 'not in git'}; check out "
                    f"{record['commit'][:7]} and run promote again (production is deployed from "
                    f"the checkout)"
                )
            record = self._save(phase="promoting")
            phase = "promoting"
        if phase == "promoting":
            deployed = (self.deployed_commit or _deployed_commit)(self.resolved)
            if record.get("commit") and deployed and record["commit"].startswith(deployed):
                self.steps.append(f"production already runs {deployed}")
            else:
                # The checkout is the candidate's commit, checked when the candidate started.
                step = prepare_deploy(
                    self.service,
                    self.resolved.environment,
                    skip_check=True,
                    allow_dirty=str(record.get("tag")).endswith("-dirty"),
                )
                self._run(promote_deploy_command(self.resolved, step.command))
            self._save(phase="stopping", share=0, outcome="promoted")
        self._stop_candidate()
        self._save(phase="promoted")
        return f"promoted {record.get('tag')}: production runs it, the candidate is stopped"

    def abort(self) -> str:
        """Share 0, then the candidate stops. Idempotent."""
        record = self.record
        phase = record.get("phase") if record else None
        if phase in (None, *DONE_PHASES):
            return f"no release in progress (phase: {phase or 'none'}); nothing to abort"
        if phase in ("promoting", "stopping"):
            raise OpsError(
                "a promote is under way; run `liftdeploy release promote` again to "
                "finish it (production may already run the candidate's commit)"
            )
        self._save(phase="aborting", share=0, outcome="aborted")
        self._stop_candidate()
        self._save(phase="aborted")
        return "aborted: the share is 0 and the candidate is stopped; production is unchanged"

    def _stop_candidate(self) -> None:
        # Clients keep the share they read for up to refresh_s: let them read the 0 first.
        self.steps.append(f"wait {self.resolved.release.refresh_s} s for clients to re-read")
        self.pause(self.resolved.release.refresh_s)
        try:
            self._run(stop_command(self.resolved))
        except ModalCommandError as exc:
            if not any(gone.lower() in exc.stderr_tail.lower() for gone in _GONE):
                raise
            self.steps.append("the candidate was already stopped")


def _deployed_commit(resolved: ResolvedDeployment) -> str | None:
    current = environment_status(resolved, None).current
    return current.commit if current else None
