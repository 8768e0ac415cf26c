"""The users collection indexed in another process: the fan-out's search answers as before,
writes made during the build survive the swap, a failed build changes nothing, and a
restart opens the indexed collection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from worker.store import EdgeVectorStore, Interaction, StoreError, UserState, edge_users_index
from worker.store.edge_users_index import POINTER_FILE, users_directory_at_open

DIM = 16
USERS = 240
SPACE = "s"


def _users(count: int, seed: int, first: int = 0) -> list[UserState]:
    rng = np.random.default_rng(seed)
    users = []
    for n in range(first, first + count):
        vector = rng.standard_normal(DIM).astype(np.float32)
        users.append(
            UserState(
                f"u{n}",
                history=[Interaction(f"i{n % 7}", "click", 1.0, 1e9 + n, f"e{n}-{seed}")],
                seen=[f"i{n % 7}"],
                vector=vector / np.linalg.norm(vector),
                updated_at=1e9 + n + seed,
                partition=n % 4,
                item_space=SPACE,
            )
        )
    return users


async def _searches(store: EdgeVectorStore, probes: list[np.ndarray]) -> list[list[str]]:
    answers = await store.search_users(probes, 10, None, SPACE)
    answers += await store.search_users(probes, 10, [1, 3], SPACE)
    return [[user_id for user_id, _ in hits] for hits in answers]


def _users_directories(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir() and p.name.startswith("users"))


async def _open(path: Path) -> EdgeVectorStore:
    store = EdgeVectorStore(path, DIM, flush_interval_s=None)
    await store.open()
    return store


async def test_an_indexed_users_collection_answers_the_fan_out_as_the_exact_search_did(
    tmp_path: Path,
) -> None:
    store = await _open(tmp_path)
    probes = [u.vector for u in _users(5, seed=99)]
    try:
        await store.upsert_users(_users(USERS, seed=1))
        exact = await _searches(store, probes)  # type: ignore[arg-type]
        assert await store.unindexed_users() == USERS
        phases = await store.build_users_index()
        assert list(phases.ends) == ["copied", "indexed", "loaded", "swapped", "closed", "removed"]
        assert await store.unindexed_users() == 0
        assert await _searches(store, probes) == exact  # type: ignore[arg-type]
        # Written again, users leave the index (the engine still counts them in it).
        await store.upsert_users(_users(30, seed=5))
        assert await store.unindexed_users() == 30
        await store.upsert_users(_users(USERS, seed=1))
        exact = await _searches(store, probes)  # type: ignore[arg-type]
    finally:
        await store.close()
    # The old directory is gone; a restart opens the indexed one.
    pointed = json.loads((tmp_path / POINTER_FILE).read_text())["collection"]
    assert not (tmp_path / "users").exists() and (tmp_path / pointed).is_dir()
    store = await _open(tmp_path)
    try:
        assert await _searches(store, probes) == exact  # type: ignore[arg-type]
    finally:
        await store.close()


async def test_users_written_and_deleted_during_a_build_are_carried_over_to_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await _open(tmp_path)
    build = edge_users_index.index_in_another_process
    rewritten = _users(60, seed=2)  # new vectors and histories for u0..u59
    added = _users(30, seed=3, first=USERS)

    async def build_while_writing(copy: Path, dim: int, kind: str) -> dict[str, float]:
        seconds = await build(copy, dim, kind)
        await store.upsert_users(rewritten + added)  # after the copy, before the swap
        await store.delete_users(["u100", "u101"])
        return seconds

    monkeypatch.setattr(edge_users_index, "index_in_another_process", build_while_writing)
    monkeypatch.setattr(edge_users_index, "CARRY_OVER_CHUNK", 16)  # several passes and calls
    try:
        await store.upsert_users(_users(USERS, seed=1))
        await store.build_users_index()
        expected = {u.user_id: u for u in _users(USERS, seed=1) + added}
        expected.update((u.user_id, u) for u in rewritten)
        del expected["u100"], expected["u101"]
        probes = [u.vector for u in rewritten[:3] + added[:3]]
        after_swap = await _searches(store, probes)  # type: ignore[arg-type]
        # The users carried over are outside the index: the next build counts them.
        assert await store.unindexed_users() == len(rewritten + added) + 2
    finally:
        await store.close()
    store = await _open(tmp_path)  # every state from the indexed collection's files
    try:
        # A restart counts only the new users outside the index (the engine's count).
        assert len(added) - 2 <= await store.unindexed_users() < len(rewritten + added)
        held = await store.get_users([*expected, "u100", "u101"])
        assert set(held) == set(expected)
        for user_id, state in held.items():
            assert state.updated_at == expected[user_id].updated_at
            assert np.allclose(state.vector, expected[user_id].vector, atol=1e-5)  # type: ignore[arg-type]
        # Each rewritten or added user is its own vector's nearest.
        nearest = [hits[0] for hits in after_swap[:6]]
        assert nearest == [u.user_id for u in rewritten[:3] + added[:3]]
        assert await _searches(store, probes) == after_swap  # type: ignore[arg-type]
    finally:
        await store.close()


async def test_a_failed_users_index_build_leaves_the_collection_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(copy: Path, dim: int, kind: str) -> dict[str, float]:
        raise StoreError("index build failed: out of disk")

    monkeypatch.setattr(edge_users_index, "index_in_another_process", failing)
    store = await _open(tmp_path)
    try:
        await store.upsert_users(_users(USERS, seed=1))
        with pytest.raises(StoreError):
            await store.build_users_index()
        await store.upsert_users(_users(5, seed=4))  # writes go on, unrecorded
        assert store._users_build is None
        assert _users_directories(tmp_path) == ["users"]
        store.user_cache.clear()
        assert len(await store.get_users([f"u{n}" for n in range(USERS)])) == USERS
    finally:
        await store.close()


def test_at_open_the_recorded_users_directory_is_kept_and_other_copies_deleted(
    tmp_path: Path,
) -> None:
    for name in ("users", "users-aaaa1111", "users-bbbb2222", "items"):
        (tmp_path / name).mkdir()
    (tmp_path / POINTER_FILE).write_text(json.dumps({"collection": "users-bbbb2222"}))
    assert users_directory_at_open(tmp_path, "users") == "users-bbbb2222"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
        "items",
        "users-bbbb2222",
    ]
    (tmp_path / POINTER_FILE).unlink()  # before any swap: the first directory
    (tmp_path / "users").mkdir()
    assert users_directory_at_open(tmp_path, "users") == "users"
    assert not (tmp_path / "users-bbbb2222").exists()
