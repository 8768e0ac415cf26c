import numpy as np

from worker.candidates import final_candidates, search_request
from worker.store import ScoredItem


def test_search_request_excludes_everything_seen() -> None:
    req = search_request(np.ones(4, dtype=np.float32), ["a", "b"], k=7)
    assert req.limit == 7 and tuple(req.exclude_item_ids) == ("a", "b")


def test_final_candidates_drop_seen_and_duplicates_and_keep_best_k() -> None:
    found = [
        ScoredItem("x", 0.5),
        ScoredItem("seen", 0.99),
        ScoredItem("y", 0.9),
        ScoredItem("x", 0.4),
        ScoredItem("z", 0.1),
    ]
    assert [i.item_id for i in final_candidates(found, ["seen"], k=2)] == ["y", "x"]
