"""Prequential replay of MovieLens-100K through the worker's own events path, next to baselines.

Protocol:
- Ratings are replayed in timestamp order in micro-batches of `batch_size`, as `user-events`
  messages (type "rating") through `recommend_batch`: the real Triton user_encoder, Qdrant
  Edge, the worker's ranking. Warm-up batches (the first 80%, the encoder's training data)
  are coalesced; the rest are not, so every event gets its own answer.
- A movie enters the catalogue (is upserted, created_at = then) just before its first
  rating, and the worker's new-item fan-out runs on it as in the items path.
- For each held-out rating, the list the user was last shown (the worker's answer to their
  previous event, or a later new-item push) is checked for the rated movie *before* the
  rating is revealed. A user's first event is checked against the list a method shows a
  user with no history. A movie's very first rating is not scored: in the replay its
  arrival and that rating coincide, which would let freshness-aware methods cheat.
- Baselines see the same events and catalogue; each one's list for a user is computed right
  after that user's previous event, so every method's list is equally stale.
- Each scored rating also gets a sampled AUC: the rated movie against sampled movies the
  user never rates, by each method's scores as its micro-batch starts (worker.evaluate.auc).
- Split over N workers (`workers`), as N processes in one consumer group on the embedded
  store run: a user's events go to the worker owning their partition (murmur2 of the key,
  range assignment), each worker has its own store holding the whole catalogue and its own
  users, fans new items out to its own users, and keeps its own signals, which take every
  worker's updates once the batch is done (the signals changelog), so a worker sees the
  others' events one batch late.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
from aiokafka.partitioner import murmur2

from worker.context import Context
from worker.evaluate.auc import NegativeSampler, WorkerScorer
from worker.evaluate.baselines import DecayedPopular, Interactions, ItemKNN, baselines
from worker.evaluate.catalogue import (
    EmbeddedCatalogue,
    movie_upsert,
    rating_weight,
    train_cutoff,
)
from worker.evaluate.metrics import MethodMetrics
from worker.fanout import fan_out
from worker.media import MediaFetcher
from worker.movielens import Movie, Rating
from worker.ranking import RankingParams
from worker.recommend import recommend_batch
from worker.records import OutMessage, RawMessage, SignalUpdates
from worker.settings import Settings
from worker.signals import Signals
from worker.store import ItemRecord, UserState, VectorStore
from worker.triton import TritonClient
from worker.variants import Variants

WORKER = "worker"


def _event_message(number: int, rating: Rating, topic: str) -> RawMessage:
    value = orjson.dumps(
        {
            "event_id": f"r{number}",
            "user_id": rating.user_id,
            "item_id": rating.item_id,
            "type": "rating",
            "value": rating.rating,
            "ts": rating.ts,
        }
    )
    return RawMessage(topic, 0, number, rating.user_id.encode(), value, rating.ts)


def _answers(outputs: Sequence[OutMessage]) -> list[tuple[str, list[str], list[str]]]:
    """(user, event ids answered, items) per output, in output order."""
    out = []
    for message in outputs:
        assert message.value is not None
        doc = orjson.loads(message.value)
        out.append((doc["user_id"], doc["event_ids"], [i["item_id"] for i in doc["items"]]))
    return out


def partition_of(user_id: str, partitions: int) -> int:
    """The partition aiokafka's (and Java's) default partitioner gives this key."""
    return (murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions


def owner_of(partition: int, partitions: int, workers: int) -> int:
    """The worker the range assignor gives this partition (the first ones get one more;
    aiokafka's default round-robin deals other partitions but the same counts)."""
    per, extra = divmod(partitions, workers)
    bounds = [(w + 1) * per + min(w + 1, extra) for w in range(workers)]
    return next(w for w, end in enumerate(bounds) if partition < end)


async def replay(
    *,
    triton: TritonClient,
    stores: Sequence[VectorStore],
    settings: Settings,
    catalogue: EmbeddedCatalogue,
    movies: dict[str, Movie],
    ratings: Sequence[Rating],
    batch_size: int = 64,
    isolated_signals: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, MethodMetrics]:
    """`isolated_signals`: each worker's signals take only its own updates (a comparison:
    workers without the signals changelog)."""
    k = settings.recommendations_k
    cut = train_cutoff(ratings)
    row_of = {item_id: row for row, item_id in enumerate(catalogue.item_ids)}
    first_rating, last_warm_up = _milestones(ratings, cut)

    board = _Scoreboard.create(catalogue, settings, k, NegativeSampler(ratings, row_of))
    data, shown = board.data, board.shown
    model_version = await triton.model_version()
    warm_up = settings.model_copy(update={"coalesce_events": True})
    held_out = settings.model_copy(update={"coalesce_events": False})
    contexts = _worker_contexts(stores, settings, triton, model_version)

    started = time.perf_counter()
    # Batches never straddle the cut: warm-up and held-out events are handled differently.
    bounds = [*range(0, cut, batch_size), *range(cut, len(ratings), batch_size), len(ratings)]
    for done, (first, end) in enumerate(itertools.pairwise(bounds), 1):
        batch = list(enumerate(ratings[first:end], first))
        now = batch[0][1].ts
        new_ids = [r.item_id for n, r in batch if first_rating[r.item_id] == n]
        if new_ids:
            records = [
                _record(movies[i], catalogue, row_of[i], now, model_version) for i in new_ids
            ]
            data.indexed[[row_of[i] for i in new_ids]] = True
            board.scorer.index(records)
            shown[WORKER].update(await _index_new_items(records, contexts, settings, now))
        if first >= cut:
            await _score_auc(board, batch, first_rating, contexts, now)

        answer_of = await _events_step(
            batch,
            contexts,
            warm_up if first < cut else held_out,
            settings.events_topic,
            isolated_signals,
        )

        for number, rating in batch:
            board.score(number, rating, cut, first_rating[rating.item_id])
            board.reveal(rating, row_of[rating.item_id], settings.event_weights)
            shown[WORKER][rating.user_id] = answer_of[f"r{number}"]
            if number >= cut or number == last_warm_up.get(rating.user_id):
                board.refresh_baselines(rating.user_id)
        if end == cut or done % 200 == 0:
            log(f"replayed {end:>6}/{len(ratings)} ratings ({time.perf_counter() - started:.0f} s)")
    return {**board.metrics, **board.variant_metrics}


@dataclasses.dataclass(slots=True)
class _Scoreboard:
    """The baselines' shared data, every method's last list per user, their metrics, and
    what the sampled AUC needs (the negatives' sampler, the worker's scorer)."""

    catalogue: EmbeddedCatalogue
    k: int
    data: Interactions
    methods: list[Any]
    knn: ItemKNN
    metrics: dict[str, MethodMetrics]
    shown: dict[str, dict[str, list[str]]]
    sampler: NegativeSampler
    scorer: WorkerScorer
    # With VARIANTS: the worker's metrics per A/B variant too ("worker/<name>"), each over
    # the users the variant's hash share assigns it, as a live A/B test splits them.
    variants: Variants
    variant_metrics: dict[str, MethodMetrics]

    @classmethod
    def create(
        cls, catalogue: EmbeddedCatalogue, settings: Settings, k: int, sampler: NegativeSampler
    ) -> _Scoreboard:
        data = Interactions(len(catalogue.item_ids), settings.trending_half_life_s)
        methods = list(
            baselines(
                catalogue.vectors,
                window=settings.history_window,
                half_life_s=settings.recency_half_life_s,
            )
        )
        knn = next(m for m in methods if isinstance(m, ItemKNN))
        metrics = {name: MethodMetrics(k) for name in (WORKER, *(m.name for m in methods))}
        shown: dict[str, dict[str, list[str]]] = {name: {} for name in metrics}
        scorer = WorkerScorer(catalogue.item_ids, catalogue.vectors, settings)
        variants = Variants(settings.variants, RankingParams.from_settings(settings))
        per_variant = (
            {f"{WORKER}/{name}": MethodMetrics(k) for name in variants.names}
            if settings.variants
            else {}
        )
        return cls(
            catalogue, k, data, methods, knn, metrics, shown, sampler, scorer, variants, per_variant
        )

    def cold_list(self, name: str, user: str) -> list[str]:
        if name == WORKER:  # the worker shows a user with no history its trending items
            rows = DecayedPopular().recommend(self.data, user, self.k)
        else:
            method = next(m for m in self.methods if m.name == name)
            rows = method.recommend(self.data, user, self.k)
        return [self.catalogue.item_ids[row] for row in rows]

    def score(self, number: int, rating: Rating, cut: int, first_of_item: int) -> None:
        """A held-out rating checked against each method's last list, before it is seen."""
        if number < cut or first_of_item == number:
            return
        user = rating.user_id
        for name, method_metrics in self.metrics.items():
            listed = self.shown[name].get(user) or self.cold_list(name, user)
            method_metrics.record(listed, rating.item_id, new_item=first_of_item >= cut)
        if self.variant_metrics:
            listed = self.shown[WORKER].get(user) or self.cold_list(WORKER, user)
            variant = self.variant_metrics[f"{WORKER}/{self.variants.assign(user).name}"]
            variant.record(listed, rating.item_id, new_item=first_of_item >= cut)

    def score_auc(
        self, number: int, rating: Rating, state: UserState, signals: Signals, now: float
    ) -> None:
        """One scored rating's AUC for every method: target first, then its negatives."""
        user, target = rating.user_id, self.scorer.row_of[rating.item_id]
        negatives = self.sampler.sample(number, user, self.data.indexed)
        rows = np.concatenate(([target], negatives)).astype(np.int64)
        scores = self.scorer.scores(state, rows, signals, now)
        self.metrics[WORKER].record_auc(scores[0], scores[1:])
        if self.variant_metrics:
            variant = self.variants.assign(user)
            own = self.scorer.scores(state, rows, signals, now, variant.params)
            self.variant_metrics[f"{WORKER}/{variant.name}"].record_auc(own[0], own[1:])
        for method in self.methods:
            scores = method.score(self.data, user, rows)
            self.metrics[method.name].record_auc(scores[0], scores[1:])

    def reveal(self, rating: Rating, row: int, weights: dict[str, float]) -> None:
        self.knn.add(self.data, rating.user_id, row)
        self.data.add(rating.user_id, row, rating_weight(rating, weights), rating.ts)

    def refresh_baselines(self, user: str) -> None:
        for method in self.methods:
            rows = method.recommend(self.data, user, self.k)
            self.shown[method.name][user] = [self.catalogue.item_ids[r] for r in rows]


def _milestones(ratings: Sequence[Rating], cut: int) -> tuple[dict[str, int], dict[str, int]]:
    """Each movie's first rating and each user's last warm-up rating (their numbers)."""
    first_rating: dict[str, int] = {}
    last_warm_up: dict[str, int] = {}
    for number, rating in enumerate(ratings):
        first_rating.setdefault(rating.item_id, number)
        if number < cut:
            last_warm_up[rating.user_id] = number
    return first_rating, last_warm_up


async def _score_auc(
    board: _Scoreboard,
    batch: Sequence[tuple[int, Rating]],
    first_rating: dict[str, int],
    contexts: Sequence[Context],
    now: float,
) -> None:
    """Every scored rating of a held-out batch, before the batch is handled: each user's
    state comes from the worker owning their partition (one store call per worker)."""
    scored = [(n, r) for n, r in batch if first_rating[r.item_id] != n]
    partitions = contexts[0].settings.topic_partitions
    owner = {
        r.user_id: owner_of(partition_of(r.user_id, partitions), partitions, len(contexts))
        for _, r in scored
    }
    states: dict[str, UserState] = {}
    for w, ctx in enumerate(contexts):
        users = sorted(u for u, o in owner.items() if o == w)
        states.update(await ctx.store.get_users(users) if users else {})
    for number, rating in scored:
        user = rating.user_id
        state = states.get(user) or UserState(user_id=user)
        board.score_auc(number, rating, state, contexts[owner[user]].signals, now)


def _worker_contexts(
    stores: Sequence[VectorStore], settings: Settings, triton: TritonClient, model_version: str
) -> list[Context]:
    """Each worker's own context; each batch's outcome is checkpointed as the pipeline does
    (states saved, then the signal updates applied), with no broker in between."""
    workers, partitions = len(stores), settings.topic_partitions
    return [
        Context(
            settings,
            triton,
            store,
            MediaFetcher.from_settings(settings),
            Signals.from_settings(settings),
            model_version,
            owned_partitions={p for p in range(partitions) if owner_of(p, partitions, workers) == w}
            if workers > 1
            else None,
        )
        for w, store in enumerate(stores)
    ]


async def _index_new_items(
    records: Sequence[ItemRecord], contexts: Sequence[Context], settings: Settings, now: float
) -> dict[str, list[str]]:
    """Every worker stores the new items and pushes them to its own users; user -> the list
    pushed."""
    pushed: dict[str, list[str]] = {}
    new_ids = [record.item_id for record in records]
    for ctx in contexts:
        ctx.settings = settings
        await ctx.store.upsert_items(records)
        pushes, marks, _ = await fan_out(new_ids, ctx, now=now)
        ctx.signals.apply(SignalUpdates(pushes=marks))
        for user, _, items in _answers(pushes):
            pushed[user] = items
    return pushed


async def _events_step(
    batch: Sequence[tuple[int, Rating]],
    contexts: Sequence[Context],
    settings: Settings,
    topic: str,
    isolated: bool = False,
) -> dict[str, list[str]]:
    """One micro-batch: each worker answers its users' events, saves their states, then
    every worker's signals take every worker's updates. Event id -> the items answered."""
    partitions = settings.topic_partitions
    mine: list[list[RawMessage]] = [[] for _ in contexts]
    for n, rating in batch:
        partition = partition_of(rating.user_id, partitions)
        worker = owner_of(partition, partitions, len(contexts))
        message = _event_message(n, rating, topic)
        mine[worker].append(dataclasses.replace(message, partition=partition))
    answer_of: dict[str, list[str]] = {}
    updates: list[tuple[Context, SignalUpdates]] = []
    for ctx, messages in zip(contexts, mine, strict=True):
        if not messages:
            continue
        ctx.settings = settings
        # The replay's clock is the batch's newest event: nothing in it is "from the future".
        ctx.clock = lambda latest=batch[-1][1].ts: latest  # type: ignore[misc]
        result = await recommend_batch(messages, ctx)
        await ctx.store.upsert_users(result.user_states)
        updates.append((ctx, result.signals))
        for _, event_ids, items in _answers(result.outputs):
            answer_of.update(dict.fromkeys(event_ids, items))
    for ctx in contexts:
        for source, update in updates:
            if source is ctx or not isolated:
                ctx.signals.apply(update)
    return answer_of


def _record(
    movie: Movie, catalogue: EmbeddedCatalogue, row: int, created_at: float, version: str
) -> ItemRecord:
    op = movie_upsert(movie, created_at)
    return ItemRecord(
        item_id=movie.item_id,
        vector=catalogue.vectors[row],
        title=op.title,
        category=op.category,
        tags=op.tags,
        created_at=created_at,
        model_version=version,
    )
