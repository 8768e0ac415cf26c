from pathlib import Path

from load_tests.users_bench import measure, prefill_users
from worker.runtime import create_store
from worker.settings import load_settings


async def test_user_state_costs_are_measured_per_window_on_a_filled_store(tmp_path: Path) -> None:
    row = await measure(300, [5, 40], tmp_path)
    assert row["users"] == 300 and row["upsert_users_per_s"] > 0
    assert [w["window"] for w in row["windows"]] == [5, 40]
    for window in row["windows"]:
        assert window["get_users_ms"] > 0 and window["upsert_users_ms"] > 0
        assert window["get_users_cached_ms"] > 0


async def test_long_lived_users_are_written_where_a_worker_reads_them(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, history_window=50, seen_window=300)
    await prefill_users(settings, ["load-user-0", "load-user-1"], events=400, items=1682)
    store = create_store(settings)
    await store.open()
    try:
        users = await store.get_users(["load-user-0", "load-user-1", "load-user-2"])
    finally:
        await store.close()
    assert sorted(users) == ["load-user-0", "load-user-1"]
    state = users["load-user-0"]
    # As the windows keep them: the latest 50 events, 300 seen catalogue items and digests.
    assert len(state.history) == 50 and len(state.seen) == len(set(state.seen)) == 300
    assert len(state.event_keys) == 8 * 300
    assert {int(i) for i in state.seen} <= set(range(1, 1683))
    assert [i.item_id for i in state.history] == state.seen[-50:]
    assert state.seen != users["load-user-1"].seen
