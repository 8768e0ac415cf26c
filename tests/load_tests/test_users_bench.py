from pathlib import Path

from load_tests.users_bench import measure


async def test_user_state_costs_are_measured_per_window_on_a_filled_store(tmp_path: Path) -> None:
    row = await measure(300, [5, 40], tmp_path)
    assert row["users"] == 300 and row["upsert_users_per_s"] > 0
    assert [w["window"] for w in row["windows"]] == [5, 40]
    for window in row["windows"]:
        assert window["get_users_ms"] > 0 and window["upsert_users_ms"] > 0
        assert window["get_users_cached_ms"] > 0
