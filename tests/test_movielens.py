import itertools

import orjson

from worker.items import ItemUpsert, parse_item
from worker.movielens import load_movies, load_ratings, movie_item_message


def test_movielens_100k_is_read_from_the_installed_wheel() -> None:
    movies = load_movies()
    ratings = load_ratings()
    assert len(movies) == 1682 and len(ratings) == 100_000
    assert movies[0].title == "Toy Story" and "Animation" in movies[0].genres
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(ratings))


def test_every_movie_becomes_a_valid_items_message() -> None:
    for movie in load_movies():
        doc = movie_item_message(movie, created_at=1.0)
        item = parse_item(movie.item_id.encode(), orjson.dumps(doc), received_at=0)
        assert isinstance(item, ItemUpsert) and item.title
