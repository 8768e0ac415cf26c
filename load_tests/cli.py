"""`python -m load_tests {run,step,chaos}`: open-loop latency load tests of the worker, each next to
the broker floor (a bare consume->produce echo) measured on the same broker."""

from __future__ import annotations

import argparse
import importlib
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from load_tests.generator import LoadTestError, RunOptions
from load_tests.report import (
    cpu_ratios,
    repeated_cpu,
    repeats_table,
    step_table,
    summary_table,
    write_json,
    write_run_png,
    write_step_png,
)
from load_tests.schedule import parse_mix
from load_tests.session import Plan, Session, Workload
from worker.kafka import KafkaError
from worker.settings import Settings, SettingsError, load_settings
from worker.stack import BrokerError
from worker.stack.worker_process import WorkerProcessError

MOVIELENS_ITEMS = 1682  # MovieLens-100K: the catalogue a local run seeds
MIN_ACHIEVED_RATIO = 0.95  # below this share of the target rate, a step did not offer its load


def _common(parser: argparse.ArgumentParser) -> None:
    load = parser.add_argument_group("workload")
    load.add_argument("--users", type=int, default=10_000, help="distinct user ids (keys)")
    load.add_argument("--items", type=int, default=1682, help="items events refer to (≤1682)")
    load.add_argument(
        "--extra-items",
        type=int,
        default=0,
        help="local runs: synthetic items (shaped like the trained ones, indexed) written into "
        "the worker's store first, so searches run over a catalogue that much larger",
    )
    load.add_argument(
        "--user-history",
        type=int,
        default=0,
        help="local runs: every user written into the worker's store first with this many past "
        "events (history and seen items as the windows keep them), so each event is a "
        "long-lived user's",
    )
    load.add_argument("--mix", default="view=0.6,click=0.3,like=0.1", help="type=weight,...")
    load.add_argument("--zipf-users", type=float, default=0.0, help="user skew; 0 = uniform")
    load.add_argument("--zipf-items", type=float, default=0.0, help="item skew; 0 = uniform")
    load.add_argument("--arrival", choices=["constant", "poisson"], default="constant")
    load.add_argument("--bad-fraction", type=float, default=0.0, help="malformed events (DLQ)")
    load.add_argument("--seed", type=int, help="random seed (default: random, reported)")
    load.add_argument("--grace", type=float, default=10.0, help="seconds to await stragglers")
    load.add_argument("--warmup", type=int, default=20, help="unmeasured events sent first")
    load.add_argument("--linger-ms", type=int, default=5, help="generator producer batching")

    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, help="write the JSON report here")
    out.add_argument("--png", type=Path, help="write charts here (needs matplotlib)")

    mode = parser.add_argument_group("systems measured")
    mode.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        help="also measure the echo floor (default: on locally, off with --bootstrap)",
    )
    mode.add_argument("--floor-only", action="store_true", help="measure only the echo floor")
    mode.add_argument(
        "--workers", type=int, default=1, help="local worker processes in one group (default 1)"
    )

    kafka = parser.add_argument_group("existing cluster (default: a local broker and worker)")
    kafka.add_argument("--bootstrap", help="host:port[,...]; the worker must already run")
    kafka.add_argument(
        "--security-protocol", choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
    )
    kafka.add_argument("--sasl-mechanism", choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
    kafka.add_argument("--sasl-username")
    kafka.add_argument("--sasl-password", help="prefer the KAFKA_SASL_PASSWORD variable")
    kafka.add_argument("--events-topic")
    kafka.add_argument("--recommendations-topic")
    kafka.add_argument("--dlq-topic", help="the events' dead-letter topic")
    kafka.add_argument(
        "--seed-catalogue", action="store_true", help="publish MovieLens items first"
    )
    kafka.add_argument("--worker-metrics-url", help="worker /metrics, to await indexing")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m load_tests", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="one run at a fixed rate")
    run.add_argument("--rate", type=float, default=1000.0, help="target events per second")
    run.add_argument("--duration", type=float, default=60.0, help="seconds of sending")
    run.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of every system, alternating (CPU ratios reported per run and as medians: "
        "an echo's own CPU per event moves by ~15%% from run to run)",
    )
    _common(run)
    sub.add_parser("chaos", help="fault injection with exact accounting (see its --help)")
    sub.add_parser("restore", help="changelog bytes and restore times (see its --help)")
    sub.add_parser("restart", help="answers before and after a restart on an empty disk")
    sub.add_parser("upgrade", help="a fusion version published under a running worker")
    sub.add_parser("catalogue", help="store cost and stalls by catalogue size (see its --help)")
    sub.add_parser("api", help="read API latency while the stream runs (see its --help)")
    sub.add_parser("reasons", help="what reasons cost the rank stage (see its --help)")
    sub.add_parser("users", help="user-state cost by history window and users (see its --help)")
    sub.add_parser("clients", help="the raw echo's CPU on aiokafka and on librdkafka")
    sub.add_parser("triton-client", help="a user-encoder request's CPU in the client")
    step = sub.add_parser("step", help="raise the rate until the p99 budget breaks")
    step.add_argument("--start", type=float, default=200.0)
    step.add_argument("--step", type=float, default=200.0)
    step.add_argument("--max", type=float, default=3000.0)
    step.add_argument("--step-duration", type=float, default=10.0)
    step.add_argument("--budget-p99-ms", type=float, default=100.0)
    _common(step)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    """The worker's settings (environment) with the command-line overrides on top."""
    flags = {
        "kafka_bootstrap_servers": args.bootstrap,
        "kafka_security_protocol": args.security_protocol,
        "kafka_sasl_mechanism": args.sasl_mechanism,
        "kafka_sasl_username": args.sasl_username,
        "kafka_sasl_password": args.sasl_password,
        "events_topic": args.events_topic,
        "recommendations_topic": args.recommendations_topic,
        "events_dlq_topic": args.dlq_topic,
    }
    return load_settings(**{k: v for k, v in flags.items() if v is not None})


def _config(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The arguments, for the report (never the password)."""
    config = {k: v for k, v in vars(args).items() if k != "sasl_password"}
    config["seed"] = seed
    return {k: str(v) if isinstance(v, Path) else v for k, v in config.items()}


def failure(result: dict[str, Any], budget_p99_ms: float) -> str | None:
    """Why a step's load was not sustained, or None when it was."""
    if result["achieved_rate"] < MIN_ACHIEVED_RATIO * result["target_rate"]:
        return "the generator could not offer the target rate"
    for key in ("missing", "dlq_unexpected", "send_errors"):
        if result[key]:
            return f"{key}={result[key]}"
    p99 = result["latency_ms"]["p99"]
    if p99 is None or p99 > budget_p99_ms:
        return f"p99 {p99} ms > budget {budget_p99_ms:g} ms"
    return None


def _run(session: Session, args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    runs = []
    for _ in range(args.repeat):
        runs.append(session.measure(args.rate, args.duration))
        print(summary_table(runs[-1]))
    results = runs[-1]
    subject = dict(results.get("worker") or results["floor"])
    if "worker" in results and "floor" in results:
        subject["floor"] = results["floor"]
    if "raw_floor" in results:
        subject["raw_floor"] = results["raw_floor"]
        subject["cpu_vs_raw_echo"] = cpu_ratios(results)
    if len(runs) > 1:
        subject["repeats"] = repeated_cpu(runs)
        print(repeats_table(subject["repeats"]))
    if args.png:
        write_run_png(args.png, results)
    return {"mode": "run", "config": config, **subject}


def _step(session: Session, args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    best: float | None = None
    rate = args.start
    while rate <= args.max:
        results = session.measure(rate, args.step_duration)
        subject = results.get("worker") or results["floor"]
        why = failure(subject, args.budget_p99_ms)
        step: dict[str, Any] = {"rate": rate, "failure": why, "result": subject}
        if "worker" in results and "floor" in results:
            step["floor"] = results["floor"]
        steps.append(step)
        print(step_table(steps).splitlines()[-1], file=sys.stderr)
        if why:
            break
        best = rate
        rate += args.step
    print(step_table(steps))
    print(f"highest sustainable rate: {best if best is not None else 'none'} events/s")
    if args.png:
        write_step_png(args.png, steps, args.budget_p99_ms)
    return {
        "mode": "step",
        "config": config,
        "budget_p99_ms": args.budget_p99_ms,
        "highest_sustainable_rate": best,
        "steps": steps,
    }


def _check(args: argparse.Namespace, external: bool) -> None:
    """Reject bad numbers before minutes are spent starting services."""
    if args.command == "run" and args.repeat < 1:
        raise ValueError("--repeat must be at least 1")
    rates = [args.rate] if args.command == "run" else [args.start, args.step, args.max]
    durations = [args.duration if args.command == "run" else args.step_duration]
    if min(rates + durations) <= 0:
        raise ValueError("rates, steps and durations must be positive")
    if args.users < 1 or args.items < 1:
        raise ValueError("--users and --items must be at least 1")
    if (not external or args.seed_catalogue) and args.items > MOVIELENS_ITEMS:
        raise ValueError(f"--items: the seeded catalogue has {MOVIELENS_ITEMS} movies")
    if not 0.0 <= args.bad_fraction <= 1.0:
        raise ValueError("--bad-fraction must be within [0, 1]")
    if args.workers < 1 or (external and args.workers != 1):
        raise ValueError("--workers: at least 1, and only for local runs (not with --bootstrap)")
    if args.extra_items < 0 or (external and args.extra_items):
        raise ValueError("--extra-items: not negative, and only for local runs")
    if args.user_history < 0 or (external and args.user_history):
        raise ValueError("--user-history: not negative, and only for local runs")


# Subcommands with their own options: the module whose main(argv) runs them.
TOOLS = {
    "chaos": "load_tests.chaos.cli",
    "restart": "load_tests.restart_probe",
    "restore": "load_tests.restore_bench",
    "catalogue": "load_tests.catalogue_bench",
    "upgrade": "load_tests.upgrade_bench",
    "api": "load_tests.api_bench",
    "reasons": "load_tests.reasons_bench",
    "users": "load_tests.users_bench",
    "clients": "load_tests.clients_bench",
    "triton-client": "load_tests.triton_client_bench",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in TOOLS:
        # Imported only when asked for: each pulls in what it measures.
        tool = importlib.import_module(TOOLS[argv[0]])
        return int(tool.main(argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
        mix = parse_mix(args.mix)
        external = settings.kafka_bootstrap_servers is not None
        _check(args, external)
    except (SettingsError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    plan = Plan(
        floor=args.floor_only or (args.floor if args.floor is not None else not external),
        worker=not args.floor_only,
        seed_catalogue=args.seed_catalogue,
        worker_metrics_url=args.worker_metrics_url,
        workers=args.workers,
        extra_items=args.extra_items,
        user_history=args.user_history,
    )
    workload = Workload(
        users=args.users,
        items=args.items,
        mix=mix,
        zipf_users=args.zipf_users,
        zipf_items=args.zipf_items,
        arrival=args.arrival,
        bad_fraction=args.bad_fraction,
        seed=seed,
    )
    options = RunOptions(grace_s=args.grace, warmup_events=args.warmup, linger_ms=args.linger_ms)
    config = _config(args, seed)
    started = time.time()
    try:
        with Session(settings, plan, workload, options) as session:
            doc = (_run if args.command == "run" else _step)(session, args, config)
    except (LoadTestError, BrokerError, WorkerProcessError, KafkaError) as exc:
        print(f"load test aborted: {exc}", file=sys.stderr)
        return 1
    doc["wall_s"] = round(time.time() - started, 1)
    if args.out:
        write_json(args.out, doc)
        print(f"report: {args.out}", file=sys.stderr)
    return 0
