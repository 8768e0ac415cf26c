"""One behavioural contract, run against both VectorStore implementations."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from worker.store import (
    EdgeVectorStore,
    Interaction,
    ItemRecord,
    QdrantServerStore,
    SearchRequest,
    UserState,
    VectorStore,
)

# Local mode ignores payload indexes and search params and says so; a server honours both.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
    pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning"),
]

DIM = 8


def unit(*components: float) -> np.ndarray:
    """A unit vector whose leading components are the given ones (rest zero)."""
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(components)] = components
    return vector / np.linalg.norm(vector)


def item(item_id: str, vector: np.ndarray, **fields: object) -> ItemRecord:
    return ItemRecord(item_id=item_id, vector=vector, **fields)  # type: ignore[arg-type]


@pytest.fixture(params=["edge", "edge-engine", "edge-process", "server"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    suffix = uuid.uuid4().hex[:8]
    names = {"items_collection": f"items_{suffix}", "users_collection": f"users_{suffix}"}
    impl: VectorStore
    if request.param.startswith("edge"):
        # edge: searches scan the items in this process (exact_index.py); edge-engine: the
        # engine answers them; edge-process: the engine, in a process of its own.
        process = request.param == "edge-process"
        exact = 10_000 if request.param == "edge" else 0
        impl = EdgeVectorStore(
            tmp_path / "edge", DIM, items_process=process, exact_search_max_items=exact, **names
        )
    else:
        impl = QdrantServerStore(DIM, location=":memory:", **names)
    await impl.open()
    yield impl
    await impl.close()


async def test_upserted_item_vectors_round_trip_as_float32(store: VectorStore) -> None:
    vectors = {"a": unit(1, 2, 3), "b": unit(0, 1, 0, 4)}
    await store.upsert_items([item(key, vec) for key, vec in vectors.items()])

    got = await store.get_item_vectors(["a", "b"])

    assert set(got) == {"a", "b"}
    for key, vec in vectors.items():
        assert got[key].dtype == np.float32
        np.testing.assert_allclose(got[key], vec, atol=1e-6)


async def test_get_item_vectors_leaves_out_unknown_ids(store: VectorStore) -> None:
    await store.upsert_items([item("a", unit(1))])

    got = await store.get_item_vectors(["a", "missing"])

    assert set(got) == {"a"}


async def test_upserting_an_item_again_replaces_it_instead_of_adding(store: VectorStore) -> None:
    await store.upsert_items([item("a", unit(1), category="old")])
    await store.upsert_items([item("a", unit(0, 1), category="new")])

    assert await store.count_items() == 1
    np.testing.assert_allclose((await store.get_item_vectors(["a"]))["a"], unit(0, 1), atol=1e-6)
    [hits] = await store.search_items([SearchRequest(vector=unit(0, 1), limit=5)])
    assert [(hit.item_id, hit.category) for hit in hits] == [("a", "new")]


async def test_count_items_counts_distinct_items(store: VectorStore) -> None:
    assert await store.count_items() == 0

    await store.upsert_items([item(f"i{n}", unit(1, n)) for n in range(5)] + [item("i0", unit(1))])

    assert await store.count_items() == 5


async def test_delete_items_removes_them_and_ignores_unknown_ids(store: VectorStore) -> None:
    await store.upsert_items([item("a", unit(1)), item("b", unit(0, 1)), item("c", unit(0, 0, 1))])

    await store.delete_items(["a", "never-stored"])
    await store.delete_items(["a"])

    assert await store.count_items() == 2
    assert set(await store.get_item_vectors(["a", "b", "c"])) == {"b", "c"}
    [hits] = await store.search_items([SearchRequest(vector=unit(1), limit=5)])
    assert {hit.item_id for hit in hits} == {"b", "c"}


async def test_user_state_round_trips_with_and_without_vector(store: VectorStore) -> None:
    history = [
        Interaction(item_id="a", type="click", weight=1.0, ts=100.5, event_id="e1"),
        Interaction(item_id="b", type="dislike", weight=-2.0, ts=101.0, event_id="e2"),
    ]
    with_vector = UserState(
        user_id="u1", history=history, seen=["a", "b"], vector=unit(1, 1), updated_at=101.0
    )
    without_vector = UserState(user_id="u2", seen=["c"], updated_at=50.0)
    await store.upsert_users([with_vector, without_vector])
    await store.flush_users()  # durable now on both; reads are unaffected

    got = await store.get_users(["u1", "u2", "nobody"])

    assert set(got) == {"u1", "u2"}
    assert got["u1"].history == history
    assert got["u1"].seen == ["a", "b"]
    assert got["u1"].updated_at == 101.0
    assert got["u1"].vector is not None
    assert got["u1"].vector.dtype == np.float32
    np.testing.assert_allclose(got["u1"].vector, unit(1, 1), atol=1e-6)
    assert got["u2"].vector is None
    assert got["u2"].history == []
    assert got["u2"].seen == ["c"]
    assert got["u2"].updated_at == 50.0


async def test_a_user_read_without_vectors_is_the_same_state_but_the_vector(
    store: VectorStore,
) -> None:
    history = [Interaction(item_id="a", type="click", weight=1.0, ts=100.5, event_id="e1")]
    written = UserState(
        user_id="u", history=history, seen=["a"], vector=unit(1, 1), updated_at=101.0,
        partition=3, item_space="fusion:2", latest="[]",
    )  # fmt: skip
    await store.upsert_users([written])

    whole = (await store.get_users(["u", "nobody"]))["u"]
    light = await store.get_users(["u", "nobody"], with_vectors=False)

    assert set(light) == {"u"}
    got = light["u"]
    assert (got.history, got.seen, got.updated_at, got.event_keys) == (
        whole.history, whole.seen, whole.updated_at, whole.event_keys,
    )  # fmt: skip
    assert (got.partition, got.item_space, got.latest) == (3, "fusion:2", "[]")
    # Left out, or (a cached state) the vector written.
    assert got.vector is None or np.allclose(got.vector, unit(1, 1), atol=1e-6)


async def test_upserting_a_user_replaces_the_whole_state(store: VectorStore) -> None:
    await store.upsert_users([UserState(user_id="u", seen=["a"], vector=unit(1))])
    await store.upsert_users([UserState(user_id="u", seen=["b"], vector=unit(0, 1))])

    got = (await store.get_users(["u"]))["u"]

    assert got.seen == ["b"]
    assert got.vector is not None
    np.testing.assert_allclose(got.vector, unit(0, 1), atol=1e-6)


async def test_search_returns_nearest_items_first_with_their_payload(store: VectorStore) -> None:
    await store.upsert_items(
        [
            item("far", unit(0, 1)),
            item("near", unit(1), category="news", tags=("x", "y"), created_at=10.0, popularity=3),
            item("middle", unit(1, 1)),
        ]
    )

    [hits] = await store.search_items([SearchRequest(vector=unit(1), limit=3)])

    assert [hit.item_id for hit in hits] == ["near", "middle", "far"]
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert (hits[0].category, hits[0].tags, hits[0].created_at, hits[0].popularity) == (
        "news",
        ("x", "y"),
        10.0,
        3.0,
    )


async def test_search_returns_at_most_limit_items(store: VectorStore) -> None:
    await store.upsert_items([item(f"i{n}", unit(1, n)) for n in range(6)])

    two, none = await store.search_items(
        [SearchRequest(vector=unit(1), limit=2), SearchRequest(vector=unit(1), limit=0)]
    )

    assert [hit.item_id for hit in two] == ["i0", "i1"]
    assert none == []


async def test_search_candidates_are_the_search_hits_with_their_scores(store: VectorStore) -> None:
    await store.upsert_items([item(f"i{n}", unit(1, n), category="c") for n in range(6)])
    asked = [
        SearchRequest(vector=unit(1), limit=3, exclude_item_ids=["i0"], with_vectors=True),
        SearchRequest(vector=unit(0, 1), limit=2, categories=["c"], with_vectors=True),
        SearchRequest(vector=unit(1), limit=0, with_vectors=True),
    ]

    found = await store.search_candidates(asked)

    hits = await store.search_items(asked)
    assert [[i.item_id for i in f.items] for f in found] == [[h.item_id for h in x] for x in hits]
    for scored, expected in zip(found, hits, strict=True):
        assert scored.scores == pytest.approx([h.score for h in expected], abs=1e-5)
        assert all(i.vector is not None and i.category == "c" for i in scored.items)


async def test_search_drops_excluded_item_ids(store: VectorStore) -> None:
    await store.upsert_items([item("a", unit(1)), item("b", unit(1, 0.1)), item("c", unit(0, 1))])

    [hits] = await store.search_items(
        [SearchRequest(vector=unit(1), limit=3, exclude_item_ids=["a", "unknown"])]
    )

    assert [hit.item_id for hit in hits] == ["b", "c"]


async def test_search_keeps_only_requested_categories(store: VectorStore) -> None:
    await store.upsert_items(
        [
            item("sport", unit(1), category="sport"),
            item("news", unit(1, 0.1), category="news"),
            item("music", unit(1, 0.2), category="music"),
            item("none", unit(1, 0.3)),
        ]
    )

    [hits] = await store.search_items(
        [SearchRequest(vector=unit(1), limit=10, categories=["news", "music"])]
    )

    assert [hit.item_id for hit in hits] == ["news", "music"]


async def test_search_keeps_only_items_created_after_the_cutoff(store: VectorStore) -> None:
    await store.upsert_items(
        [
            item("old", unit(1), created_at=1_000.0),
            item("fresh", unit(1, 0.1), created_at=2_000.0),
            item("fresher", unit(1, 0.2), created_at=3_000.0),
        ]
    )

    [hits] = await store.search_items(
        [SearchRequest(vector=unit(1), limit=10, created_after=1_500.0)]
    )

    assert [hit.item_id for hit in hits] == ["fresh", "fresher"]


async def test_batched_search_answers_each_request_in_order(store: VectorStore) -> None:
    await store.upsert_items(
        [
            item("x", unit(1), category="a", created_at=1.0),
            item("y", unit(0, 1), category="b", created_at=2.0),
            item("z", unit(0, 0, 1), category="a", created_at=3.0),
        ]
    )

    answers = await store.search_items(
        [
            SearchRequest(vector=unit(0, 0, 1), limit=1),
            SearchRequest(vector=unit(1), limit=1),
            SearchRequest(vector=unit(0.1, 1, 1), limit=3, categories=["a"]),
            SearchRequest(vector=unit(0, 1), limit=1),
            SearchRequest(vector=unit(1), limit=3, exclude_item_ids=["x"], created_after=2.5),
        ]
    )

    assert [[hit.item_id for hit in hits] for hits in answers] == [
        ["z"],
        ["x"],
        ["z", "x"],
        ["y"],
        ["z"],
    ]


async def test_empty_inputs_are_no_ops(store: VectorStore) -> None:
    await store.upsert_items([item("a", unit(1))])
    await store.upsert_users([UserState(user_id="u")])

    await store.upsert_items([])
    await store.delete_items([])
    await store.upsert_users([])

    assert await store.get_item_vectors([]) == {}
    assert await store.get_users([]) == {}
    assert await store.search_items([]) == []
    assert await store.count_items() == 1
    assert set(await store.get_users(["u"])) == {"u"}


async def test_search_on_an_empty_store_finds_nothing(store: VectorStore) -> None:
    assert await store.search_items([SearchRequest(vector=unit(1), limit=5)]) == [[]]


async def test_open_is_idempotent_and_keeps_data(store: VectorStore) -> None:
    await store.upsert_items([item("a", unit(1))])

    await store.open()

    assert await store.count_items() == 1


async def test_get_items_returns_payload_and_vector_of_existing_items(store: VectorStore) -> None:
    await store.upsert_items(
        [item("a", unit(1, 2), category="news", tags=("x",), created_at=5.0), item("b", unit(0, 1))]
    )

    got = await store.get_items(["a", "missing"])

    assert set(got) == {"a"}
    assert (got["a"].category, got["a"].tags, got["a"].created_at) == ("news", ("x",), 5.0)
    assert got["a"].vector is not None and got["a"].vector.dtype == np.float32
    np.testing.assert_allclose(got["a"].vector, unit(1, 2), atol=1e-6)
    assert await store.get_items([]) == {}


async def test_search_returns_vectors_only_when_asked(store: VectorStore) -> None:
    await store.upsert_items([item("a", unit(1)), item("b", unit(1, 1))])

    plain, with_vectors = await store.search_items(
        [SearchRequest(vector=unit(1), limit=2), SearchRequest(unit(1), 2, with_vectors=True)]
    )

    assert [hit.vector for hit in plain] == [None, None]
    assert [hit.item_id for hit in with_vectors] == ["a", "b"]
    np.testing.assert_allclose(with_vectors[1].vector, unit(1, 1), atol=1e-6)  # type: ignore[arg-type]


async def test_search_users_finds_the_nearest_users_with_vectors(store: VectorStore) -> None:
    await store.upsert_users(
        [
            UserState(user_id="near", vector=unit(1)),
            UserState(user_id="middle", vector=unit(1, 1)),
            UserState(user_id="far", vector=unit(0, 1)),
            UserState(user_id="no-vector"),
        ]
    )

    near, other = await store.search_users([unit(1), unit(0, 1)], 2)
    [everyone] = await store.search_users([unit(1)], 10)

    assert [user for user, _ in near] == ["near", "middle"]
    assert near[0][1] == pytest.approx(1.0, abs=1e-5)
    assert [user for user, _ in other] == ["far", "middle"]
    assert {user for user, _ in everyone} == {"near", "middle", "far"}
    assert await store.search_users([unit(1)], 0) == [[]]
    assert await store.search_users([], 5) == []


async def test_search_users_within_partitions_finds_only_users_of_those_partitions(
    store: VectorStore,
) -> None:
    await store.upsert_users(
        [
            UserState(user_id="p0", vector=unit(1), partition=0),
            UserState(user_id="p1", vector=unit(1, 0.1), partition=1),
            UserState(user_id="p2", vector=unit(1, 0.2), partition=2),
        ]
    )

    [mine] = await store.search_users([unit(1)], 10, partitions=[1, 2])
    [none] = await store.search_users([unit(1)], 10, partitions=[])
    [best_two] = await store.search_users([unit(1)], 2, partitions=[2, 1, 0])

    assert [user for user, _ in mine] == ["p1", "p2"]
    assert [user for user, _ in best_two] == ["p0", "p1"]
    assert none == []
    assert (await store.get_users(["p2"]))["p2"].partition == 2


async def test_search_users_in_an_item_space_finds_only_users_whose_vector_was_made_in_it(
    store: VectorStore,
) -> None:
    await store.upsert_users(
        [
            UserState(user_id="old", vector=unit(1), item_space="fusion:2"),
            UserState(user_id="new", vector=unit(1, 0.1), item_space="fusion:3"),
        ]
    )

    [new] = await store.search_users([unit(1)], 10, item_space="fusion:3")
    [both] = await store.search_users([unit(1)], 10)

    assert [user for user, _ in new] == ["new"]
    assert [user for user, _ in both] == ["old", "new"]
    assert (await store.get_users(["new"]))["new"].item_space == "fusion:3"
