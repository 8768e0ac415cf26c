"""MovieLens-100K as multimodal content plus behaviour, for training and evaluating the fusion.

Content per movie is what the worker would embed: the `items` message built by
`worker.movielens.movie_item_message` and turned into text by `worker.items.item_text`
("Toy Story (1995). Tags: Animation, Children's, Comedy"), plus a synthetic poster (MovieLens
has no images): the title and year set on a background and shapes whose colours come from a
hash of the item id. The posters carry no behavioural signal (EfficientNet cannot read the
title); they make the image path present in training and evaluation, so the fusion must learn
how much an uninformative image is worth, and the concatenation baseline is a real one.
There is no audio.

Behaviour: every rating is an implicit interaction. A fixed, seeded fifth of the movies is the
cold-start set: nothing about them (content or ratings) is used in training.
"""

from __future__ import annotations

import hashlib
import io
import random
import textwrap
from dataclasses import dataclass
from functools import cache

import numpy as np
import orjson
from PIL import Image, ImageDraw, ImageFont

from models.onnx_embedder import Features, OnnxItemEmbedder
from worker.evaluate.metrics import AUC_NEGATIVES, sample_negatives, sampled_auc
from worker.items import ItemUpsert, item_text, parse_item
from worker.movielens import Movie, load_movies, load_ratings, movie_item_message

COLD_FRACTION = 0.2
SPLIT_SEED = 0
POSTER_SIZE = (200, 300)
TOP_K = 10


@dataclass(frozen=True)
class Content:
    item_ids: list[str]
    texts: list[str]  # exactly what the worker sends to the text encoder
    posters: list[bytes]  # JPEG
    user_items: list[np.ndarray]  # per user: item indices, in rating-time order


@dataclass(frozen=True)
class Metrics:
    """Each a mean over users."""

    recall: float  # |top-k ∩ relevant| / |relevant|
    precision: float  # |top-k ∩ relevant| / k
    f1: float  # the user's own 2PR / (P + R), 0 without a hit
    ndcg: float  # binary relevance, ideal DCG over min(|relevant|, k)
    auc: float  # relevant items against sampled non-relevant candidates (see ranking_metrics)
    n_users: int
    n_items: int  # candidates ranked per user

    def as_json(self, k: int = TOP_K) -> dict[str, float | int]:
        return {
            f"recall@{k}": round(self.recall, 4),
            f"precision@{k}": round(self.precision, 4),
            f"f1@{k}": round(self.f1, 4),
            f"ndcg@{k}": round(self.ndcg, 4),
            "auc": round(self.auc, 4),
            "n_users": self.n_users,
            "n_items": self.n_items,
        }


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's embedded font: the same glyphs on every machine, nothing to download.
    return ImageFont.load_default(size=size)


def poster(movie: Movie) -> bytes:
    """A deterministic poster-like JPEG: title and year over hashed colours and shapes."""
    rng = random.Random(hashlib.sha256(movie.item_id.encode()).digest())

    def colour(low: int, high: int) -> tuple[int, int, int]:
        return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))

    width, height = POSTER_SIZE
    image = Image.new("RGB", POSTER_SIZE, colour(0, 255))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(2, 5)):
        x, y = rng.randrange(width), rng.randrange(height)
        radius = rng.randint(20, 90)
        shape = rng.choice([draw.ellipse, draw.rectangle])
        shape((x - radius, y - radius, x + radius, y + radius), fill=colour(0, 255))
    ink = colour(200, 255) if sum(image.getpixel((width // 2, 40))) < 384 else colour(0, 60)
    lines = textwrap.wrap(movie.title, width=14)[:4]
    for row, line in enumerate(lines):
        draw.text((width // 2, 40 + 34 * row), line, fill=ink, font=_font(28), anchor="mt")
    if movie.year:
        draw.text((width // 2, height - 30), str(movie.year), fill=ink, font=_font(22), anchor="mm")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def served_text(movie: Movie) -> str:
    """The text encoder's input for this movie, built by the worker's own code."""
    value = orjson.dumps(movie_item_message(movie, created_at=0.0))
    item = parse_item(movie.item_id.encode(), value, received_at=0.0)
    assert isinstance(item, ItemUpsert)
    text = item_text(item)
    assert text is not None, "every MovieLens movie has a title"
    return text


def load_content() -> Content:
    movies = load_movies()
    index = {movie.item_id: n for n, movie in enumerate(movies)}
    by_user: dict[str, list[int]] = {}
    for rating in load_ratings():  # sorted by time
        by_user.setdefault(rating.user_id, []).append(index[rating.item_id])
    return Content(
        item_ids=[movie.item_id for movie in movies],
        texts=[served_text(movie) for movie in movies],
        posters=[poster(movie) for movie in movies],
        user_items=[np.array(items) for _, items in sorted(by_user.items())],
    )


def featurise(content: Content, embedder: OnnxItemEmbedder, batch: int = 64) -> Features:
    """Every movie's fusion inputs (text and poster), from the served ONNX encoders."""
    parts = [
        embedder.features(
            content.texts[start : start + batch],
            content.posters[start : start + batch],
            [None] * len(content.texts[start : start + batch]),
        )
        for start in range(0, len(content.item_ids), batch)
    ]
    columns = zip(*(part.arrays() for part in parts), strict=True)
    return Features(*(np.concatenate(column) for column in columns))


def split_items(n_items: int, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of `fraction` of the items, drawn with `seed`."""
    chosen = np.random.default_rng(seed).permutation(n_items)[: round(n_items * fraction)]
    mask = np.zeros(n_items, dtype=bool)
    mask[chosen] = True
    return mask


def cold_items(n_items: int) -> np.ndarray:
    """The held-out cold-start items: never seen in training, ranked in evaluation."""
    return split_items(n_items, COLD_FRACTION, SPLIT_SEED)


def ranking_metrics(
    vectors: np.ndarray,
    user_items: list[np.ndarray],
    history: np.ndarray,
    candidates: np.ndarray,
    k: int = TOP_K,
    negatives: int = AUC_NEGATIVES,
    seed: int = SPLIT_SEED,
) -> Metrics:
    """Per user: the mean of the unit vectors of the items in `history` they interacted with
    is the profile; every `candidates` item is ranked by cosine to it, and the candidates the
    user interacted with are the relevant ones. Users with no history or nothing relevant
    are skipped.

    AUC: `negatives` candidates the user never interacted with are drawn per user (seed
    (seed, user's index): the same draw for every method); the user's AUC is the share of
    (relevant, negative) pairs whose relevant item scores higher, ties half. Every
    candidate is scored anyway, so this costs no extra scoring."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.maximum(norms, 1e-12)
    candidate_ids = np.flatnonzero(candidates)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    per_user: list[tuple[float, float, float, float, float]] = []
    for index, items in enumerate(user_items):
        seen = items[history[items]]
        relevant = items[candidates[items]]
        if not seen.size or not relevant.size:
            continue
        scores = unit[candidate_ids] @ unit[seen].mean(axis=0)
        top = candidate_ids[np.argsort(-scores, kind="stable")[:k]]
        hits = np.isin(top, relevant).astype(np.float64)
        recall, precision = hits.sum() / len(relevant), hits.sum() / k
        f1 = 2 * precision * recall / (precision + recall) if hits.any() else 0.0
        ndcg = float(hits @ discounts[: len(hits)]) / discounts[: min(len(relevant), k)].sum()
        is_relevant = np.isin(candidate_ids, relevant)
        pool = np.flatnonzero(~np.isin(candidate_ids, items))  # positions in candidate_ids
        drawn = sample_negatives(pool, negatives, (seed, index))
        auc = sampled_auc(scores[is_relevant], scores[drawn])
        per_user.append((recall, precision, f1, ndcg, auc))
    recall, precision, f1, ndcg, auc = np.nanmean(
        np.array(per_user).reshape(-1, 5), axis=0
    ).tolist()
    return Metrics(recall, precision, f1, ndcg, auc, len(per_user), len(candidate_ids))
