"""Local changelog checkpoints: how far each changelog partition is already in the local
store (Kafka Streams' `.checkpoint` file). A restart on the same disk replays only the tail;
without the file (a fresh disk) a changelog is read from its beginning."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import orjson


class OffsetFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._offsets: dict[str, dict[int, int]] = {}
        with contextlib.suppress(FileNotFoundError, orjson.JSONDecodeError, AttributeError):
            raw = orjson.loads(path.read_bytes())
            self._offsets = {
                topic: {int(p): int(o) for p, o in parts.items()} for topic, parts in raw.items()
            }

    def get(self, topic: str, partition: int) -> int:
        return self._offsets.get(topic, {}).get(partition, 0)

    def update(self, topic: str, offsets: dict[int, int]) -> None:
        self._offsets.setdefault(topic, {}).update(offsets)

    def save(self) -> None:
        """Atomically (a crash leaves the old file or the new one, never half of one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(
            orjson.dumps(
                {t: {str(p): o for p, o in parts.items()} for t, parts in self._offsets.items()}
            )
        )
        os.replace(tmp, self.path)
