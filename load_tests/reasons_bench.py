"""What reasons cost the ranking: one micro-batch's rank stage with and without them.

    python -m load_tests reasons [--users 64] [--history 50] [--rounds 200]
                                 [--out results/reasons_cost.json]

Builds one round as the events path has it after retrieval (synthetic 256-d item vectors:
`--users` users, each with `--history` liked items, CANDIDATE_POOL search hits, the trending
items and co-visitation scores) and times `answer.rank_round` in this process, alternating
runs with reasons and runs where explaining is skipped. CPU time per batch (process time),
medians over `--rounds` each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from worker import answer
from worker.answer import Round, rank_round
from worker.candidates import CandidateFilter
from worker.context import Context
from worker.settings import load_settings
from worker.signals import Signals
from worker.store import Interaction, Scored, ScoredItem, UserState

DIM = 256


def _round(users: int, history: int, ctx: Context, rng: np.random.Generator) -> Round:
    catalogue = 5000
    vectors = rng.standard_normal((catalogue, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    item = [ScoredItem(str(i), 0.0, f"c{i % 20}", vector=vectors[i]) for i in range(catalogue)]
    pool = ctx.settings.candidate_pool
    states, found, covisited = [], {}, []
    for row in range(users):
        liked = rng.choice(catalogue, history, replace=False)
        states.append(
            UserState(
                f"u{row}",
                history=[Interaction(str(i), "like", 2.0, float(n)) for n, i in enumerate(liked)],
                seen=[str(i) for i in liked],
            )
        )
        # The store never returns a seen item: hits come from the rest of the catalogue.
        hits = rng.choice(np.setdiff1d(np.arange(catalogue), liked), pool, replace=False)
        found[row] = Scored([item[i] for i in hits], [float(rng.random()) for _ in hits])
        covisited.append({str(i): float(rng.random()) for i in hits[:10]})
        ctx.signals.covisitation.add(str(hits[0]), [str(i) for i in liked[:5]])
    fetched = {s.item_id: item[int(s.item_id)] for u in states for s in u.history}
    popular = {str(i): 1.0 for i in range(30)}
    fetched.update((i, item[int(i)]) for i in popular)
    user_vectors: list[np.ndarray | None] = [vectors[row] for row in range(users)]
    constraints = [CandidateFilter()] * users
    return Round(
        {s.user_id: [] for s in states}, states, popular, covisited, fetched, 1000.0,
        user_vectors, constraints, found,
    )  # fmt: skip


def _time(rnd: Round, ctx: Context, rounds: int, explained: bool) -> list[float]:
    times = []

    def unexplained(ranked: Sequence[Sequence[ScoredItem]], *_: object) -> list[list[object]]:
        return [[[] for _ in items] for items in ranked]

    silent: contextlib.AbstractContextManager[Any] = mock.patch.object(
        answer, "explain_round", unexplained
    )
    for _ in range(rounds):
        with contextlib.nullcontext() if explained else silent:
            started = time.process_time()
            rank_round(rnd, ctx)
            times.append(time.process_time() - started)
    return times


def run(users: int, history: int, rounds: int) -> dict[str, Any]:
    settings = load_settings()
    ctx = Context(settings, None, None, None, Signals.from_settings(settings))  # type: ignore[arg-type]
    rnd = _round(users, history, ctx, np.random.default_rng(7))
    with_reasons, without = [], []
    for _ in range(5):  # alternate, so drift on a shared machine hits both alike
        with_reasons += _time(rnd, ctx, rounds // 5, True)
        without += _time(rnd, ctx, rounds // 5, False)
    ms_with = 1000 * statistics.median(with_reasons)
    ms_without = 1000 * statistics.median(without)
    return {
        "users_per_batch": users,
        "history": history,
        "rounds": rounds,
        "rank_ms_per_batch_without_reasons": round(ms_without, 3),
        "rank_ms_per_batch_with_reasons": round(ms_with, 3),
        "reasons_ms_per_user": round((ms_with - ms_without) / users, 4),
        "ratio": round(ms_with / ms_without, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests reasons", description=__doc__)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("results/reasons_cost.json"))
    args = parser.parse_args(argv)
    report = run(args.users, args.history, args.rounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0
