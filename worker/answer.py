"""Where a round's users get their final lists: candidates merged and scored per A/B
variant, diversified (MMR), and explained (reasons). Pure: the round holds everything the
store, Triton and the signals returned (see recommend.py for the stages that fill it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from worker.candidates import (
    CandidateFilter,
    catalogue_items,
    merge_candidates,
    scored_against,
    scored_per_query,
)
from worker.context import Context
from worker.covisitation import top_unseen
from worker.events import UserEvent
from worker.ranking import RankingParams, mmr, shortlist_many
from worker.reasons import (
    LIKED_FOR_REASONS,
    Reason,
    UserEvidence,
    explain,
    favourite_category,
    nearest_liked_many,
)
from worker.rules import pin_applies
from worker.store import Scored, ScoredItem, UserState
from worker.trending import counts_as_consumption

_NOTHING = Scored([], [])  # a row without a search (read, never changed)


@dataclass(slots=True)
class Round:
    """One round's users, from loaded state to ranked answers."""

    by_user: dict[str, list[UserEvent]]
    states: list[UserState]
    popular: dict[str, float]
    covisited: list[dict[str, float]]
    fetched: dict[str, ScoredItem]
    now: float  # the latest event's time (the clock for a read without events)
    vectors: list[np.ndarray | None] = dataclasses.field(default_factory=list)
    constraints: list[CandidateFilter] = dataclasses.field(default_factory=list)
    found: dict[int, Scored] = dataclasses.field(default_factory=dict)  # search hits per row
    pins: list[ScoredItem] = dataclasses.field(default_factory=list)  # pinned items in effect
    # Per user, the seen items as a set and the best co-visited items not seen
    # (`top_unseen`), where the loader already made them (it fetches those items); None:
    # made when ranking.
    seen_sets: list[set[str]] | None = None
    covisited_ids: list[list[str]] | None = None
    # Users whose stored state was read without its vector (see recommend.py).
    vectorless: set[str] = dataclasses.field(default_factory=set)
    # The fetched items' vectors by id (the user encoder's input and negative feedback's).
    item_vectors: dict[str, np.ndarray] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.item_vectors = {k: v.vector for k, v in self.fetched.items() if v.vector is not None}


@dataclass(frozen=True, slots=True)
class Answer:
    items: list[ScoredItem]
    reasons: list[list[Reason]]
    variant: str
    strategy: str  # "user_vector", or "trending" for a user without a usable history

    @property
    def reason_kinds(self) -> tuple[str, ...]:
        return tuple(r["kind"] for why in self.reasons for r in why)


def negatives_of(state: UserState, vectors: Mapping[str, np.ndarray]) -> np.ndarray:
    """[m, D] vectors of the catalogue items in the user's history with a negative weight
    (dislikes, skips, low ratings): the ranking keeps their look-alikes down."""
    rows = [vectors[i.item_id] for i in state.history if i.weight < 0 and i.item_id in vectors]
    return np.array(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def consumed_items(state: UserState, n: int) -> list[str]:
    """The user's last n consumed items (skips and dislikes are not consumption)."""
    return [i.item_id for i in state.history if counts_as_consumption(i.type)][-n:]


def shortlists_for_users(
    found: Sequence[Scored],
    extra: Sequence[Scored],
    states: Sequence[UserState],
    trending: Mapping[str, float],
    constraints: Sequence[CandidateFilter],
    now: float,
    params: RankingParams,
    negatives: Sequence[np.ndarray | None] | None = None,
    covisited: Sequence[Mapping[str, float] | None] | None = None,
    seen: Sequence[Collection[str]] | None = None,
) -> list[Scored]:
    """Per user: search hits plus extra candidates (trending and co-visited items, scored
    against this user: see `scored_against`) -> the user's scored shortlist, scored for the
    whole batch at once; `ranking.mmr` then makes the final k. `seen`: the users' seen items
    as sets, where the caller has them (else their states')."""
    excluded = seen if seen is not None else [state.seen for state in states]
    merged = [
        merge_candidates(hits, more, done, allowed)
        for hits, more, done, allowed in zip(found, extra, excluded, constraints, strict=True)
    ]
    return shortlist_many(
        merged,
        trending,
        history_lengths=[len(state.history) for state in states],
        now=now,
        params=params,
        negatives=negatives,
        covisited=covisited,
    )


def rank_round(rnd: Round, ctx: Context, k: int | None = None) -> list[Answer]:
    """Every user's final list (k items: RECOMMENDATIONS_K unless given), ranked with the
    parameters of the user's variant: one batched ranking per variant."""
    settings, states = ctx.settings, rnd.states
    # Each user's seen items as a set once: three passes below exclude them.
    seen = rnd.seen_sets if rnd.seen_sets is not None else [set(s.seen) for s in states]
    popular = scored_against(catalogue_items(rnd.popular, rnd.fetched), rnd.vectors)
    covisited_ids = rnd.covisited_ids
    if covisited_ids is None:
        covisited_ids = [
            top_unseen(scores, done, settings.covisitation_candidates)
            for scores, done in zip(rnd.covisited, seen, strict=True)
        ]
    extras = [
        Scored(hot.items + together.items, hot.scores + together.scores)
        for hot, together in zip(
            popular, scored_per_query(covisited_ids, rnd.fetched, rnd.vectors), strict=True
        )
    ]
    item_vectors = rnd.item_vectors
    negatives = [negatives_of(state, item_vectors) for state in states]
    ranked: list[tuple[list[ScoredItem], str]] = [([], "")] * len(states)
    for variant, rows in ctx.variants.rows_by_variant([s.user_id for s in states]).items():
        params = variant.params if k is None else dataclasses.replace(variant.params, k=k)
        shortlists = shortlists_for_users(
            [rnd.found.get(row, _NOTHING) for row in rows],
            [extras[row] for row in rows],
            [states[row] for row in rows],
            rnd.popular,
            [rnd.constraints[row] for row in rows],
            rnd.now,
            params,
            [negatives[row] for row in rows],
            [rnd.covisited[row] for row in rows],
            [seen[row] for row in rows],
        )
        for row, items in zip(rows, mmr(shortlists, params.k, params.mmr_lambda), strict=True):
            placed = place_pins(items, rnd.pins, params.k, rnd.constraints[row], seen[row])
            ranked[row] = (placed, variant.name)
    reasons = explain_round([items for items, _ in ranked], rnd, ctx)
    pinned = {pin.item_id for pin in rnd.pins}
    return [
        _answer(items, name, why, row, rnd, pinned)
        for row, ((items, name), why) in enumerate(zip(ranked, reasons, strict=True))
    ]


def _answer(
    items: list[ScoredItem],
    variant: str,
    reasons: list[list[Reason]],
    row: int,
    rnd: Round,
    pinned: set[str],
) -> Answer:
    categories = rnd.constraints[row].categories
    for item, why in zip(items, reasons, strict=True):
        pin = item.rules.pin
        if item.item_id in pinned and pin is not None and pin_applies(pin, categories):
            why.insert(0, {"kind": "pinned"})
    strategy = "user_vector" if rnd.vectors[row] is not None else "trending"
    return Answer(items, reasons, variant, strategy)


def place_pins(
    listed: Sequence[ScoredItem],
    pins: Sequence[ScoredItem],
    k: int,
    allowed: CandidateFilter,
    excluded: Collection[str],
) -> list[ScoredItem]:
    """The list with each pinned item that may appear in it at its slot (1 = first), lowest
    slot first, cut to k (see worker/rules.py for the precedence): a pin never brings back
    an excluded, seen, unavailable or filtered-out item."""
    applicable = [
        pin
        for pin in pins
        if pin.rules.pin is not None
        and pin_applies(pin.rules.pin, allowed.categories)
        and allowed.allows(pin)
    ]
    if not applicable:
        return list(listed)
    banned = excluded if isinstance(excluded, set | frozenset) else set(excluded)
    placed = {p.item_id for p in applicable}
    out = [item for item in listed if item.item_id not in placed]
    for pin in sorted(applicable, key=lambda p: (p.rules.pin.slot, p.item_id)):  # type: ignore[union-attr]
        if pin.item_id in banned:
            continue
        slot = min(pin.rules.pin.slot, len(out) + 1) - 1  # type: ignore[union-attr]
        score = out[slot].score if slot < len(out) else (out[-1].score if out else 0.0)
        out.insert(slot, pin.with_score(score))
    return out[:k]


def explain_round(
    ranked: Sequence[Sequence[ScoredItem]], rnd: Round, ctx: Context
) -> list[list[list[Reason]]]:
    """The reasons of every user's listed items (see worker/reasons.py): one batched
    product finds each item's nearest liked item."""
    settings, fetched = ctx.settings, rnd.fetched
    liked_per_user, recent_per_user = [], []
    for state in rnd.states:
        liked, recent = _liked_and_recent(state, fetched, settings.covisitation_history)
        liked_per_user.append(liked)
        recent_per_user.append(recent)
    nearest = nearest_liked_many(ranked, liked_per_user)
    together = [
        [i.item_id for i in items if covisited.get(i.item_id, 0.0) > 0]
        for items, covisited in zip(ranked, rnd.covisited, strict=True)
    ]
    partners = ctx.signals.covisitation.strongest_partners_many(together, recent_per_user)
    out = []
    for row, items in enumerate(ranked):
        evidence = UserEvidence(
            nearest=nearest[row],
            partners=partners[row],
            categories=rnd.constraints[row].categories if rnd.constraints else None,
        )
        liked_categories = [fetched[i].category for i, _ in reversed(liked_per_user[row])]
        out.append(
            explain(
                items,
                evidence,
                trending=rnd.popular,
                now=rnd.now,
                new_within_s=settings.freshness_half_life_s,
                favourite=favourite_category(liked_categories),
            )
        )
    return out


def _liked_and_recent(
    state: UserState, fetched: Mapping[str, ScoredItem], recent_n: int
) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """The user's last LIKED_FOR_REASONS liked catalogue items (latest first, with their
    vectors) and last `recent_n` consumed items, in one pass over the history."""
    liked: dict[str, np.ndarray] = {}
    recent: list[str] = []
    for interaction in reversed(state.history):
        found = fetched.get(interaction.item_id)
        if (
            interaction.weight > 0
            and found is not None
            and found.vector is not None
            and len(liked) < LIKED_FOR_REASONS
        ):
            liked.setdefault(interaction.item_id, found.vector)
        if len(recent) < recent_n and counts_as_consumption(interaction.type):
            recent.append(interaction.item_id)
        elif len(recent) >= recent_n and len(liked) >= LIKED_FOR_REASONS:
            break  # both full: the rest of the history changes neither
    return list(liked.items()), recent
