"""plan: will the spec fit its GPUs, how much KV cache, how fast, what it costs."""

from __future__ import annotations

import argparse

from liftdeploy.cli import common


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plan",
        help="size a spec before deploying: memory, KV cache, concurrency, speed bound, cost",
        description="Predict what vLLM will log at startup (weights, available KV cache, KV "
        "tokens, maximum concurrency), a decode-speed bound and the bill, with "
        "verdicts and fixes. Exit status 1 if any verdict is an error.",
    )
    common.add_spec_argument(p)
    common.add_env_or_all_option(p, verb="plan")
    common.add_json_option(p)
    p.add_argument(
        "--suggest",
        action="store_true",
        help="also propose settings that fit the workload (with reasons) and the "
        "`liftdeploy set` line that applies them",
    )
    prices = p.add_mutually_exclusive_group()
    prices.add_argument(
        "--price",
        type=lambda v: common.positive_number(v, "dollars"),
        metavar="USD",
        dest="price",
        help="price of one GPU-hour, overriding the spec and the catalog",
    )
    prices.add_argument(
        "--live-prices",
        action="store_true",
        help="read prices from `modal billing rates` (needs a Modal login)",
    )
    p.set_defaults(handler=plan_command)


def plan_command(args: argparse.Namespace) -> int:
    from liftdeploy.planner.report import format_plan, plan

    spec = common.load(args.spec)
    environments = list(spec.environments) if args.all_envs else [args.env]
    plans, advice = [], []
    for env in environments:
        resolved = spec.resolve(env)
        price, source = args.price, None
        if args.live_prices:
            from liftdeploy.planner.prices import live_gpu_hour_usd

            price, source = live_gpu_hour_usd(resolved.gpu.type), "modal billing rates (live)"
        plans.append(plan(resolved, gpu_hour_usd=price, price_source=source))
        if args.suggest:
            advice.append(_advice(args.spec, spec, resolved, plans[-1].architecture))
    if args.json:
        reports = [p.to_dict() for p in plans]
        for report, (suggestions, assignments, ranking) in zip(reports, advice):
            report["suggestions"] = [s.to_dict() for s in suggestions]
            report["set"] = assignments
            report["gpu_ranking"] = ranking
        common.print_json(reports if args.all_envs else reports[0])
    else:
        blocks = [format_plan(p) for p in plans]
        for i, (suggestions, assignments, ranking) in enumerate(advice):
            blocks[i] += "\n" + _format_advice(args.spec, suggestions, assignments, plans[i].fits)
            blocks[i] += f"\n  GPU ranking       {ranking}"
        print("\n\n".join(blocks))
    return 0 if all(p.fits for p in plans) else 1


def _advice(path: str, spec, resolved, arch):  # noqa: ANN001, ANN202 - see plan_command
    from liftdeploy.planner.advice import set_keys, suggest
    from liftdeploy.planner.checks import ranking_note

    suggestions = suggest(resolved, arch)
    overlay = spec.environments[resolved.environment].model_dump(exclude_none=True)
    return suggestions, set_keys(resolved, overlay, suggestions), ranking_note(resolved)


def _format_advice(path: str, suggestions: list, assignments: list[str], fits: bool) -> str:
    if not suggestions:
        return (
            "  suggestions       none: the settings fit the workload"
            if fits
            else "  suggestions       none: no setting liftdeploy can change makes it fit; "
            "see the error's fix"
        )
    rows = ["  suggestions"]
    for s in suggestions:
        rows.append(f"    {s.key}: {s.current} -> {s.value}")
        rows.append(f"      why: {s.reason}")
    rows.append(f"  apply with: liftdeploy set {path} {' '.join(assignments)}")
    return "\n".join(rows)
