"""The chaos scenarios: each runs on a fresh local stack and returns its accounting.

kill9, sigterm   the worker is killed (SIGKILL) or stopped (SIGTERM) every `interval_s`
                 while events stream in, and restarted
triton-outage    tritonserver is killed for `outage_s` mid-stream, then restarted
broker-loss      the broker restarts with its data gone; events sent after it must be answered
poison           malformed messages of many kinds on both input topics among valid events
items-crash      items are ingested while the worker is killed (SIGKILL) repeatedly
scale-out        three workers in one group, one killed in turn and restarted on a fresh
                 disk (scale.py)
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from load_tests.chaos.harness import ChaosStack, Sent
from load_tests.chaos.ledger import Ledger
from load_tests.chaos.poison import poison_events, poison_items
from load_tests.chaos.scale import scale_out
from worker.movielens import load_movies, movie_item_message


@dataclass
class ChaosOptions:
    events: int = 5000
    rate: float = 100.0
    users: int = 250
    items: int = 200
    cycles: int = 10
    interval_s: float = 5.0
    outage_s: float = 30.0
    poison: int = 1000
    grace_s: float = 60.0
    seed: int = 7


def _ledger(stack: ChaosStack) -> Ledger:
    s = stack.settings
    assert s is not None
    return Ledger(stack.broker.bootstrap_servers, s.recommendations_topic,
                  [s.events_dlq_topic, s.items_dlq_topic])  # fmt: skip


async def _settle(ledger: Ledger, sent: Sent, grace_s: float) -> float:
    """Wait until every sent event is answered or dead-lettered (or the grace ends)."""
    started = time.monotonic()
    while time.monotonic() - started < grace_s:
        if ledger.account(sent.where)["lost"] == 0:
            break
        await asyncio.sleep(0.25)
    return time.monotonic() - started


async def _finish(
    stack: ChaosStack,
    ledger: Ledger,
    sent: Sent,
    opts: ChaosOptions,
    items: list[str] | None = None,
) -> dict[str, Any]:
    await _settle(ledger, sent, opts.grace_s)
    await asyncio.sleep(1.0)  # answers still in flight would count as duplicates later
    await ledger.stop()
    alive = stack.worker_alive()
    stack.signal_worker(signal.SIGTERM)
    answered = {e for e in sent.where if ledger.answered[e]}
    state = await stack.user_state_check(sent, answered, items)
    if items is None:
        state.pop("items_present")
    return {
        **ledger.account(sent.where),
        **state,
        "crashes": stack.crashes + (0 if alive else 1),
    }


async def restarts(stack: ChaosStack, opts: ChaosOptions, sig: int) -> dict[str, Any]:
    """kill9 / sigterm: the worker is signalled every interval and started again."""
    ledger = await _ledger(stack).start()
    sent = Sent()
    sending = asyncio.create_task(stack.send_events(opts.events, opts.rate, opts.users, sent))
    exits, readies = [], []
    for _ in range(opts.cycles):
        await asyncio.sleep(opts.interval_s)
        exits.append(await asyncio.to_thread(stack.signal_worker, sig))
        readies.append(await asyncio.to_thread(stack.start_worker))
    await sending
    result = await _finish(stack, ledger, sent, opts)
    key = "sigterm_exit_s" if sig == signal.SIGTERM else "kill_exit_s"
    return {
        **result,
        "cycles": opts.cycles,
        f"{key}_median": round(statistics.median(exits), 2) if exits else None,
        f"{key}_max": round(max(exits), 2) if exits else None,
        "ready_again_s_median": round(statistics.median(readies), 2) if readies else None,
        "ready_again_s_max": round(max(readies), 2) if readies else None,
    }


async def triton_outage(stack: ChaosStack, opts: ChaosOptions) -> dict[str, Any]:
    ledger = await _ledger(stack).start()
    sent = Sent()
    sending = asyncio.create_task(stack.send_events(opts.events, opts.rate, opts.users, sent))
    await asyncio.sleep(min(3.0, opts.events / opts.rate / 4))
    # With its Python backend's stub processes: left alone, they outlive the server.
    stack.triton.send_signal(signal.SIGKILL, group=True)
    stack.triton.wait_exit(10.0)
    down_at = time.monotonic()
    noticed_s = None
    ready_samples = []
    while time.monotonic() - down_at < opts.outage_s:
        ready = stack.metric("streamrec_ready")
        if noticed_s is None and ready == 0:
            noticed_s = time.monotonic() - down_at
        if noticed_s is not None:  # from the moment the worker noticed, it must stay down
            ready_samples.append(ready)
        await asyncio.sleep(0.1)
    await asyncio.to_thread(stack.triton.start)
    back_at = time.monotonic()
    # The first answer after Triton is ready again, whichever event it answers.
    resumed_s = None
    while time.monotonic() - back_at < 30.0:
        after = [t for t in ledger.first_answer_at.values() if t >= back_at]
        if after:
            resumed_s = min(after) - back_at
            break
        await asyncio.sleep(0.05)
    await sending
    await _settle(ledger, sent, opts.grace_s)
    trending = stack.metric('streamrec_signal_updates_total{signal="trending"}')
    infra = stack.metric('streamrec_infra_failures_total{dependency="triton"}')
    ready_after = stack.metric("streamrec_ready")
    result = await _finish(stack, ledger, sent, opts)
    return {
        **result,
        "outage_s": opts.outage_s,
        "answers_resumed_s_after_triton_ready": None if resumed_s is None else round(resumed_s, 2),
        "not_ready_after_s": None if noticed_s is None else round(noticed_s, 2),
        "ready_while_down_share": round(sum(ready_samples) / max(len(ready_samples), 1), 3),
        "ready_after": ready_after,
        "triton_failures_counted": infra,
        # One worker process throughout: each answered event adds exactly one trending update.
        "trending_updates": trending,
        "trending_double_counted": int(trending - result["answered"]),
    }


async def broker_loss(stack: ChaosStack, opts: ChaosOptions) -> dict[str, Any]:
    half = opts.events // 2
    ledger = await _ledger(stack).start()
    before = Sent()
    await stack.send_events(half, opts.rate, opts.users, before, prefix="b")
    await _settle(ledger, before, opts.grace_s)
    await ledger.stop()
    # The broker restarts on the same port with nothing: no topics, no offsets, no groups.
    stack.broker.send_signal(signal.SIGKILL)
    stack.broker.wait_exit(10.0)
    stack.broker.start()
    restarted_at = time.monotonic()
    while time.monotonic() - restarted_at < 60:
        if stack.metric_sum("streamrec_topics_created_total"):
            break
        await asyncio.sleep(0.2)
    recreated_s = time.monotonic() - restarted_at
    ledger = await _ledger(stack).start()
    after = Sent()
    await stack.send_events(opts.events - half, opts.rate, opts.users, after, prefix="a")
    resets = stack.metric_sum("streamrec_offset_resets_total")
    lost_topics = stack.metric_sum("streamrec_topics_created_total")
    result = await _finish(stack, ledger, after, opts)
    return {
        **result,
        "sent_before_loss": half,
        "topics_recreated": lost_topics,
        "topics_recreated_s": round(recreated_s, 2),
        "offset_resets": resets,
    }


Where = tuple[str, int, int]


async def _send_poison(
    stack: ChaosStack, opts: ChaosOptions
) -> tuple[dict[Where, str], dict[Where, str], Sent]:
    """The malformed messages (where each landed -> its kind; items: where -> key), with a
    valid event after every fourth one."""
    assert stack.settings is not None
    producer = await stack.producer(max_request_size=4 * 1024 * 1024)
    bad: dict[Where, str] = {}
    item_key: dict[Where, str] = {}
    sent = Sent()
    try:
        events = poison_events(opts.poison // 2, stack.item_ids)
        items = poison_items(opts.poison - len(events))
        for n, (kind, key, value) in enumerate([*events, *items]):
            topic = stack.settings.events_topic if n < len(events) else stack.settings.items_topic
            meta = await (await producer.send(topic, value, key=key))
            bad[(meta.topic, meta.partition, meta.offset)] = kind
            if topic == stack.settings.items_topic and key:
                item_key[(meta.topic, meta.partition, meta.offset)] = key.decode("utf-8", "replace")
            if n % 4 == 0:  # valid events among them: none may wait behind a bad one
                event_id, value, user = stack.event(n // 4, opts.users, prefix="v")
                meta = await (
                    await producer.send(stack.settings.events_topic, value, key=user.encode())
                )
                sent.where[event_id] = (meta.topic, meta.partition, meta.offset)
                sent.user_of[event_id] = user
    finally:
        await producer.stop()
    return bad, item_key, sent


async def poison(stack: ChaosStack, opts: ChaosOptions) -> dict[str, Any]:
    assert stack.settings is not None
    ledger = await _ledger(stack).start()
    rss_before = stack.triton_rss_mb()
    worker_before = stack.worker_rss_mb()
    bad, item_key, sent = await _send_poison(stack, opts)
    started = time.monotonic()
    while time.monotonic() - started < opts.grace_s:
        if all(ledger.dead[w] for w in bad) and ledger.account(sent.where)["lost"] == 0:
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(3.0)  # decode buffers of the last batch released
    rss_after = stack.triton_rss_mb()
    worker_after = stack.worker_rss_mb()
    kinds = sorted(set(bad.values()))
    twice = sum(1 for w in bad if ledger.dead[w] > 1)
    stages = dict(ledger.dead_stages)
    result = await _finish(stack, ledger, sent, opts, sorted(set(item_key.values())))
    # Not dead-lettered but indexed: the input was usable after all (documented per kind).
    indexed = set(result.pop("items_present"))
    accepted = sorted({bad[w] for w in bad if not ledger.dead[w] and item_key.get(w) in indexed})
    not_dead = sorted({bad[w] for w in bad if not ledger.dead[w]} - set(accepted))
    return {
        **result,
        "malformed": len(bad),
        "kinds": len(kinds),
        "malformed_dead_lettered": sum(1 for w in bad if ledger.dead[w]),
        "malformed_dead_lettered_twice": twice,
        "kinds_accepted": accepted,
        "kinds_neither_dead_lettered_nor_accepted": not_dead,
        "dead_letter_stages": stages,
        "triton_rss_mb_before": round(rss_before, 1),
        "triton_rss_mb_after": round(rss_after, 1),
        "triton_rss_growth": round(rss_after / rss_before - 1, 3) if rss_before else None,
        "worker_rss_mb_before": round(worker_before, 1),
        "worker_rss_mb_after": round(worker_after, 1),
        "stalled_partitions": 0 if result["lost"] == 0 and not not_dead else -1,
    }


async def items_crash(stack: ChaosStack, opts: ChaosOptions) -> dict[str, Any]:
    """Items (beyond the seeded ones) arrive while the worker is killed again and again."""
    assert stack.settings is not None
    movies = load_movies()[len(stack.item_ids) : len(stack.item_ids) + opts.poison]
    producer = await stack.producer(linger_ms=5)
    items_topic = stack.settings.items_topic

    async def send() -> None:
        for n, movie in enumerate(movies):
            value = orjson.dumps(movie_item_message(movie, created_at=time.time()))
            await producer.send(items_topic, value, key=movie.item_id.encode())
            if n % 20 == 0:
                await asyncio.sleep(0.1)
        await producer.flush()

    sending = asyncio.create_task(send())
    for _ in range(opts.cycles):
        await asyncio.sleep(opts.interval_s)
        await asyncio.to_thread(stack.signal_worker, signal.SIGKILL)
        await asyncio.to_thread(stack.start_worker)
    await sending
    await producer.stop()
    expected = len(stack.item_ids) + len(movies)
    started = time.monotonic()
    while time.monotonic() - started < opts.grace_s:
        # The counter restarts with each process; the store is what counts (below).
        if stack.metric("streamrec_ready") == 1 and time.monotonic() - started > 5:
            break
        await asyncio.sleep(0.5)
    alive = stack.worker_alive()
    stack.signal_worker(signal.SIGTERM)
    state = await stack.user_state_check(Sent(), set())
    return {
        "items_sent": expected,
        "items_stored": state["items_stored"],
        "items_missing": expected - state["items_stored"],
        "cycles": opts.cycles,
        "crashes": stack.crashes + (0 if alive else 1),
    }


SCENARIOS = (
    "kill9", "sigterm", "triton-outage", "broker-loss", "poison", "items-crash", "scale-out",
)  # fmt: skip


async def run_scenario(name: str, opts: ChaosOptions, workdir: Path) -> dict[str, Any]:
    stack = ChaosStack(workdir, seed=opts.seed)
    try:
        await stack.start(opts.items)
        if name == "kill9":
            result = await restarts(stack, opts, signal.SIGKILL)
        elif name == "sigterm":
            result = await restarts(stack, opts, signal.SIGTERM)
        elif name == "triton-outage":
            result = await triton_outage(stack, opts)
        elif name == "broker-loss":
            result = await broker_loss(stack, opts)
        elif name == "poison":
            result = await poison(stack, opts)
        elif name == "items-crash":
            result = await items_crash(stack, opts)
        elif name == "scale-out":
            result = await scale_out(stack, await _ledger(stack).start(), opts)
        else:
            raise ValueError(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}")
    finally:
        stack.close()
    return {"scenario": name, **result}
