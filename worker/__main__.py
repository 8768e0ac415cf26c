"""Command line: `python -m worker {stack,run,demo}`.

stack  start the local broker and tritonserver, print their addresses, stay up
run    the worker against the configured services (local ones for those not configured)
demo   the whole product on embedded defaults: MovieLens-100K catalogue, live replay
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys

from worker.settings import Settings, SettingsError, load_settings


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_stack(settings: Settings) -> int:
    from worker.stack import LocalStack

    with LocalStack(settings, force=True) as resolved:
        print(f"KAFKA_BOOTSTRAP_SERVERS={resolved.kafka_bootstrap_servers}", flush=True)
        print(f"TRITON_URL={resolved.triton_url}", flush=True)
        print("local stack up; Ctrl-C stops it", file=sys.stderr, flush=True)
        stop = asyncio.Event()

        async def wait() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()

        asyncio.run(wait())
    return 0


def cmd_run(settings: Settings) -> int:
    from worker.kafka import all_topics, ensure_topics
    from worker.metrics import Metrics
    from worker.runtime import Runtime
    from worker.stack import LocalStack

    if settings.gc_threshold:
        gc.set_threshold(settings.gc_threshold)
    with LocalStack(settings) as resolved:

        async def run() -> None:
            await ensure_topics(resolved, all_topics(resolved))
            metrics = Metrics()
            metrics.watch_gc()
            port = metrics.serve(resolved.metrics_port)
            logging.getLogger(__name__).info("metrics on http://0.0.0.0:%d/metrics", port)
            await Runtime(resolved, metrics).run()

        asyncio.run(run())
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from worker.demo import run_demo

    return run_demo(settings, users=args.users, events_per_user=args.events_per_user)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stack", help="start the local broker and tritonserver and stay up")
    sub.add_parser("run", help="run the worker (local services for those not configured)")
    demo = sub.add_parser("demo", help="MovieLens-100K demo on the embedded defaults")
    demo.add_argument("--users", type=int, default=4, help="users whose ratings are replayed")
    demo.add_argument("--events-per-user", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    _configure_logging(settings.log_level)
    if args.command == "stack":
        return cmd_stack(settings)
    if args.command == "run":
        return cmd_run(settings)
    return cmd_demo(settings, args)


if __name__ == "__main__":
    sys.exit(main())
