"""How the replay splits users over workers: as Kafka's partitioner and range assignor do."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from worker.evaluate.replay import owner_of, partition_of


def test_users_land_on_the_partition_the_default_partitioner_gives_their_key() -> None:
    partitioner = DefaultPartitioner()
    for user in ("1", "42", "943", "alice", "ünï"):
        expected = partitioner(user.encode(), list(range(4)), list(range(4)))
        assert partition_of(user, 4) == expected


def test_partitions_go_to_workers_in_ranges_the_first_ones_taking_the_remainder() -> None:
    assert [owner_of(p, 4, 3) for p in range(4)] == [0, 0, 1, 2]
    assert [owner_of(p, 4, 1) for p in range(4)] == [0, 0, 0, 0]
    assert [owner_of(p, 6, 3) for p in range(6)] == [0, 0, 1, 1, 2, 2]
