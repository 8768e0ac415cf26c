"""Which item collection holds which item space, for the embedded store.

Item vectors of two spaces (two fusion or encoder versions) must never meet in one search,
so each space has its own collection: the active one answers searches; a pending one is
filled by a background re-embed and then replaces it in one step. The registry is a small
JSON file next to the shards, replaced atomically, so a restart finds the same collections.
A store written before spaces existed has one collection of unknown space ("").
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SpaceCollection:
    space: str  # e.g. "item_embedder:1+text_encoder:1+...+fusion:2"; "" = not known yet
    collection: str  # the shard's directory name
    # Its items at the latest count (every index check), -1 if never counted: chooses where
    # the collection is opened next (EdgeVectorStore's `items_process_from`).
    items: int = -1


def space_collection(base: str, space: str) -> str:
    """A new collection name for `space`: the configured name, a digest of the space, and a
    random part (a rebuild of the active space needs a second collection of that space)."""
    return f"{base}-{hashlib.sha1(space.encode()).hexdigest()[:12]}-{secrets.token_hex(3)}"


class SpaceRegistry:
    def __init__(self, path: Path, base: str) -> None:
        self.path = path
        self.base = base
        self.active = SpaceCollection("", base)
        self.pending: SpaceCollection | None = None
        if path.exists():
            doc = json.loads(path.read_text())
            self.active = SpaceCollection(**doc["active"])
            self.pending = SpaceCollection(**doc["pending"]) if doc.get("pending") else None

    def remove_strays(self, directory: Path) -> None:
        """Delete item collections neither active nor pending: what a process stopped in the
        middle of an index build or a switch left behind."""
        kept = {self.active.collection, *([self.pending.collection] if self.pending else [])}
        # The first collection has the bare name; every later one a suffixed name.
        for path in [directory / self.base, *directory.glob(f"{self.base}-*")]:
            if path.is_dir() and path.name not in kept:
                shutil.rmtree(path, ignore_errors=True)

    def save(self) -> None:
        doc = {
            "active": asdict(self.active),
            "pending": None if self.pending is None else asdict(self.pending),
        }
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(doc, indent=2))
        os.replace(temporary, self.path)
