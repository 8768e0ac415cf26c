"""The MovieLens-100K catalogue in the item space, embedded by the served item_embedder.

Training and evaluation both take item vectors from Triton, exactly as the worker's items
path makes them, so the user encoder learns (and is judged) in the space Qdrant searches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import orjson

from worker.events import UserEvent, event_weight
from worker.items import ItemUpsert, item_text, parse_item
from worker.movielens import Movie, Rating, movie_item_message
from worker.triton import ItemContent, TritonClient

# The chronological split shared by training and the replay: the first 80% of ratings (in
# timestamp order) train the user encoder and warm the replay up; the rest is scored.
TRAIN_FRACTION = 0.8


def train_cutoff(ratings: Sequence[Rating]) -> int:
    """Index of the first held-out rating in the timestamp-sorted list."""
    return int(len(ratings) * TRAIN_FRACTION)


def rating_weight(rating: Rating, weights: Mapping[str, float]) -> float:
    """The signed weight the worker gives this rating as a `rating` event."""
    event = UserEvent("", rating.user_id, rating.item_id, "rating", rating.rating, rating.ts)
    return event_weight(event, dict(weights))


def movie_upsert(movie: Movie, created_at: float) -> ItemUpsert:
    """The movie as the items path parses it (the demo publishes the same message)."""
    value = orjson.dumps(movie_item_message(movie, created_at=created_at))
    op = parse_item(movie.item_id.encode(), value, received_at=created_at)
    assert isinstance(op, ItemUpsert)
    return op


@dataclass(frozen=True)
class EmbeddedCatalogue:
    item_ids: list[str]
    vectors: np.ndarray  # float32 [n, dim], unit rows, in item_ids order
    model_version: str  # what Triton served, e.g. "item_embedder:1+...+fusion:2+user_encoder:1"

    def fingerprint(self) -> str:
        """Identifies the item space: vectors rounded to 1e-4, so float noise between runs
        does not count as a change but a new item embedder does."""
        digest = hashlib.sha256()
        for item_id, vector in zip(self.item_ids, self.vectors, strict=True):
            digest.update(item_id.encode())
            digest.update(np.round(vector, 4).astype(np.float32).tobytes())
        return digest.hexdigest()[:16]


async def embed_movies(triton: TritonClient, movies: Sequence[Movie]) -> EmbeddedCatalogue:
    """One item_embedder pass over the catalogue (split into max_batch_size requests)."""
    texts = [item_text(movie_upsert(movie, 0.0)) for movie in movies]
    vectors, errors = await triton.embed_items([ItemContent(text=text) for text in texts])
    failed = [m.item_id for m, error in zip(movies, errors, strict=True) if error]
    if failed:
        raise RuntimeError(f"item_embedder failed on {len(failed)} movies, e.g. {failed[:3]}")
    return EmbeddedCatalogue(
        item_ids=[m.item_id for m in movies],
        vectors=vectors.astype(np.float32),
        model_version=await triton.model_version(),
    )
