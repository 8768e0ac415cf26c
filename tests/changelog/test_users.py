"""Restoring user state into the embedded store: the local checkpoint is saved only once
what it covers survives a kill -9 (the users collection keeps no write-ahead log)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
from pathlib import Path

from worker.changelog.codec import encode_user
from worker.kafka import OutputProducer
from worker.records import OutMessage
from worker.settings import Settings
from worker.store import EdgeVectorStore, UserState

# Restores partition 0 into a fresh store, then dies by SIGKILL without closing anything.
_RESTORE_THEN_KILL = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from worker.changelog import OffsetFile, UserStateRestorer
    from worker.settings import load_settings
    from worker.store import EdgeVectorStore

    async def main() -> None:
        settings = load_settings()
        store = EdgeVectorStore(Path(sys.argv[1]), 4, flush_interval_s=None)
        await store.open()
        restorer = UserStateRestorer(settings, store, OffsetFile(Path(sys.argv[2])))
        await restorer.start()
        await restorer.restore([0])
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


def _state(settings: Settings, user_id: str, seen: list[str]) -> OutMessage:
    state = UserState(user_id, seen=seen, updated_at=1.0, partition=0)
    return OutMessage(settings.user_state_topic, user_id.encode(), encode_user(state), partition=0)


async def test_a_restore_checkpoints_only_what_survives_a_kill(
    settings: Settings, output: OutputProducer, tmp_path: Path
) -> None:
    states = [("a", ["x"]), ("b", ["y"]), ("a", ["x", "z"])]
    await output.publish([_state(settings, user, seen) for user, seen in states], [], "dlq")
    store_dir, checkpoint = tmp_path / "edge", tmp_path / "offsets.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "QDRANT_"))}
    env["KAFKA_BOOTSTRAP_SERVERS"] = str(settings.kafka_bootstrap_servers)
    env["USER_STATE_TOPIC"] = settings.user_state_topic
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _RESTORE_THEN_KILL, str(store_dir), str(checkpoint),
        env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(child.communicate(), 120)
    assert child.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    assert json.loads(checkpoint.read_text()) == {settings.user_state_topic: {"0": 3}}
    store = EdgeVectorStore(store_dir, 4, flush_interval_s=None)
    await store.open()
    try:
        held = await store.get_users(["a", "b"])
    finally:
        await store.close()
    assert {user: state.seen for user, state in held.items()} == {"a": ["x", "z"], "b": ["y"]}
