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
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from worker.errors import StartupError
from worker.logs import configure_logging
from worker.settings import Settings, SettingsError, load_settings, unknown_variables

T = TypeVar("T")


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


def run_on_loop(main: Coroutine[Any, Any, T], event_loop: str) -> T:
    """`asyncio.run(main)` on the event loop EVENT_LOOP names (uvloop or asyncio's own)."""
    if event_loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    return asyncio.run(main)


def check_data_dir(settings: Settings) -> None:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        probe = settings.data_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"DATA_DIR={settings.data_dir} cannot be written: {exc.strerror}"
        ) from None


def cmd_run(settings: Settings) -> int:
    from worker.api import ApiServer, bind_socket
    from worker.kafka import all_topics, ensure_topics
    from worker.metrics import Metrics
    from worker.runtime import Runtime
    from worker.stack import LocalStack
    from worker.store.exact_index import one_blas_thread

    if settings.gc_threshold:
        gc.set_threshold(settings.gc_threshold)
    one_blas_thread()
    try:
        check_data_dir(settings)
        metrics = Metrics()
        host = settings.metrics_host
        try:
            sock = bind_socket(host, settings.metrics_port)
        except OSError as exc:
            raise StartupError(
                f"METRICS_PORT={settings.metrics_port} on METRICS_HOST={host}: {exc.strerror}"
            ) from None
        metrics.watch_gc()
        port = sock.getsockname()[1]
        logging.getLogger(__name__).info("API and metrics on http://%s:%d/", host, port)
        with LocalStack(settings) as resolved:

            async def run() -> None:
                runtime = Runtime(resolved, metrics)
                api = ApiServer(runtime.ctx, runtime.health, metrics)
                await api.start(sock)
                try:
                    await ensure_topics(resolved, all_topics(resolved))
                    await runtime.run()
                finally:
                    await api.stop()

            run_on_loop(run(), settings.event_loop)
    except StartupError as exc:
        print(exc, file=sys.stderr)
        return 2
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
    configure_logging(settings)
    # Secrets print masked (SecretStr); the test of planted secrets reads this line.
    logging.getLogger(__name__).debug("settings: %r", settings)
    for line in unknown_variables(os.environ):
        logging.getLogger(__name__).warning("%s", line)
    if args.command == "stack":
        return cmd_stack(settings)
    if args.command == "run":
        return cmd_run(settings)
    return cmd_demo(settings, args)


if __name__ == "__main__":
    sys.exit(main())
