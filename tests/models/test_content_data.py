"""MovieLens content for the fusion: the worker's own text, deterministic posters."""

from __future__ import annotations

import io

import orjson
from PIL import Image

from models.content_data import POSTER_SIZE, poster, served_text
from worker.items import ItemUpsert, item_text, parse_item
from worker.movielens import Movie, load_movies, movie_item_message


def test_served_text_is_what_the_worker_sends_to_the_text_encoder() -> None:
    movie = load_movies()[0]
    message = orjson.dumps(movie_item_message(movie, created_at=0.0))
    item = parse_item(b"1", message, received_at=0.0)
    assert isinstance(item, ItemUpsert)
    assert served_text(movie) == item_text(item)
    assert served_text(movie) == "Toy Story (1995). Tags: Animation, Children's, Comedy"


def test_posters_are_deterministic_decodable_jpegs() -> None:
    movies = [Movie("1", "Toy Story", 1995, ("Animation",)), Movie("2", "GoldenEye", None, ())]
    first = [poster(movie) for movie in movies]
    assert first == [poster(movie) for movie in movies]
    assert first[0] != first[1]
    with Image.open(io.BytesIO(first[0])) as image:
        assert image.format == "JPEG" and image.size == POSTER_SIZE
