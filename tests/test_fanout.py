from worker.fanout import partitions_to_search


def test_a_new_item_is_pushed_to_the_users_of_the_partitions_a_worker_owns() -> None:
    assert partitions_to_search({2, 0}, {0, 1, 2, 3}) == [0, 2]
    assert partitions_to_search(set(), {0, 1}) == []


def test_a_worker_that_owns_every_partition_searches_every_user_unfiltered() -> None:
    assert partitions_to_search({0, 1, 2, 3}, {0, 1, 2, 3}) is None
    assert partitions_to_search(None, {0, 1}) is None  # a shared store: every user


def test_without_the_topics_partitions_known_the_owned_ones_are_searched() -> None:
    assert partitions_to_search({0, 1}, set()) == [0, 1]
