"""MovieLens-100K, read from the installed `recbole` wheel (never copied into this repo:
its licence forbids redistribution)."""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from pathlib import Path


class DatasetNotFound(FileNotFoundError):
    """recbole (installed with --no-deps) is missing, or ships no ml-100k example."""


@dataclass(frozen=True, slots=True)
class Movie:
    item_id: str
    title: str
    year: int | None
    genres: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rating:
    user_id: str
    item_id: str
    rating: float
    ts: float


def dataset_dir() -> Path:
    # find_spec does not import recbole (whose imports need packages we do not install).
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFound("recbole is not installed: `pip install --no-deps recbole`")
    path = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"
    if not (path / "ml-100k.item").is_file():
        raise DatasetNotFound(f"no MovieLens-100K files under {path}")
    return path


def _rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)  # header: name:type columns
        return [row for row in reader if row]


def load_movies() -> list[Movie]:
    movies = []
    for row in _rows(dataset_dir() / "ml-100k.item"):
        item_id, title, year, genres = ([*row, "", "", ""])[:4]
        movies.append(
            Movie(
                item_id=item_id,
                title=title.strip(),
                year=int(year) if year.strip().isdigit() else None,
                genres=tuple(genres.split()),
            )
        )
    return movies


def load_ratings() -> list[Rating]:
    """All ratings, sorted by timestamp (ties by user, then item: deterministic)."""
    ratings = [
        Rating(user_id=u, item_id=i, rating=float(r), ts=float(t))
        for u, i, r, t in (row[:4] for row in _rows(dataset_dir() / "ml-100k.inter"))
    ]
    ratings.sort(key=lambda r: (r.ts, int(r.user_id), int(r.item_id)))
    return ratings


def movie_item_message(movie: Movie, *, created_at: float) -> dict[str, object]:
    """A movie as an `items` topic message."""
    # Title, year and genres are all MovieLens has; the genres reach the text encoder once,
    # as tags (short texts keep the CPU encoder fast).
    title = f"{movie.title} ({movie.year})" if movie.year else movie.title
    return {
        "item_id": movie.item_id,
        "title": title,
        "category": movie.genres[0] if movie.genres else None,
        "tags": list(movie.genres),
        "created_at": created_at,
    }
