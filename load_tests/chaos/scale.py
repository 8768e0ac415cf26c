"""scale-out: three workers in one group on the embedded store; every `interval_s` one of
them (in turn) is killed with SIGKILL and started again on a fresh, empty disk, so its
partitions move twice and everything it knew comes back from the changelogs.

Accounting, on top of the ledger's (lost, duplicated): `seen_violations`, answers that
recommend an item the user had consumed in an event sent before the one answered (state lost
in a move would show here), and, from the `user-state` changelog read back at the end (the
system of record: each worker's store holds only part of the users), events held twice in a
user's history and answered events it lacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from load_tests.chaos.harness import ChaosStack, Sent
from load_tests.chaos.ledger import Ledger
from worker.changelog.codec import decode_user
from worker.settings import Settings
from worker.stack.worker_process import WorkerProcess
from worker.store import UserState

WORKERS = 3


def _start(settings: Settings, workdir: Path, name: str) -> WorkerProcess:
    own = settings.model_copy(update={"data_dir": workdir / name, "metrics_port": 0})
    return WorkerProcess(own, workdir / f"{name}.log").start()


async def scale_out(stack: ChaosStack, ledger: Ledger, opts: Any) -> dict[str, Any]:
    s = stack.settings
    assert s is not None and stack.worker is not None
    workers = [stack.worker]
    sent = Sent()
    readies = []
    try:
        for n in range(1, WORKERS):
            workers.append(await asyncio.to_thread(_start, s, stack.workdir, f"scale-{n}-0"))
        sending = asyncio.create_task(stack.send_events(opts.events, opts.rate, opts.users, sent))
        for cycle in range(opts.cycles):
            await asyncio.sleep(opts.interval_s)
            victim = cycle % WORKERS
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait_exit(10.0)
            started = time.monotonic()
            name = f"scale-{victim}-{cycle + 1}"  # a fresh disk every time
            workers[victim] = await asyncio.to_thread(_start, s, stack.workdir, name)
            readies.append(time.monotonic() - started)
        await sending
        for _ in range(int(opts.grace_s * 4)):
            if not ledger.account(sent.where)["lost"]:
                break
            await asyncio.sleep(0.25)
        await asyncio.sleep(1.0)
        crashes = sum(1 for w in workers if w.problem() is not None)
    finally:
        for worker in workers:
            worker.stop()
        stack.worker = None
        await ledger.stop()
    answered = {e for e in sent.where if ledger.answered[e]}
    states = await read_user_states(s, stack.broker.bootstrap_servers)
    return {
        **ledger.account(sent.where),
        **state_accounting(states, answered),
        "seen_violations": seen_violations(sent, ledger),
        "workers": WORKERS,
        "cycles": opts.cycles,
        "ready_again_s_max": round(max(readies), 2) if readies else None,
        "crashes": crashes,
    }


def seen_violations(sent: Sent, ledger: Ledger) -> int:
    """Answers recommending an item the user consumed in an earlier event (send order)."""
    earlier: dict[str, set[str]] = {}
    violations = 0
    for event_id in sent.where:  # insertion order is send order
        user = sent.user_of[event_id]
        items = ledger.items_of.get(event_id)
        if items is not None and earlier.get(user, set()) & set(items):
            violations += 1
        earlier.setdefault(user, set()).add(sent.item_of[event_id])
    return violations


def state_accounting(states: dict[str, UserState], answered: set[str]) -> dict[str, int]:
    held = [i.event_id for state in states.values() for i in state.history]
    return {
        "double_counted": len(held) - len(set(held)),
        "missing_from_state": len(answered - set(held)),
    }


async def read_user_states(settings: Settings, bootstrap: str) -> dict[str, UserState]:
    """The latest state per user in the `user-state` changelog."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    states: dict[str, UserState] = {}
    try:
        parts = consumer.partitions_for_topic(settings.user_state_topic)
        if not parts:
            await consumer.topics()
            parts = consumer.partitions_for_topic(settings.user_state_topic) or set()
        tps = [TopicPartition(settings.user_state_topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        idle = 0
        while idle < 3:
            batches = await consumer.getmany(timeout_ms=500)
            idle = 0 if batches else idle + 1
            for records in batches.values():
                for record in records:
                    with contextlib.suppress(ValueError):
                        if record.value is not None:
                            state = decode_user(record.value)
                            states[state.user_id] = state
    finally:
        await consumer.stop()
    return states
