import hashlib

from worker.kafka import (
    DLQ_ERROR_HEADER,
    DLQ_ORIGINAL_SHA256_HEADER,
    DLQ_ORIGINAL_SIZE_HEADER,
    DLQ_TRUNCATED_HEADER,
    dead_letter_record,
)
from worker.pipeline import next_offsets
from worker.records import DeadLetter, RawMessage


def _letter(key: bytes, value: bytes, reason: str = "bad") -> DeadLetter:
    return DeadLetter(RawMessage("items", 1, 7, key, value, 1.7e9), "decode", reason)


def test_a_dead_letter_that_fits_keeps_the_original_key_and_bytes() -> None:
    key, value, headers = dead_letter_record(
        _letter(b"k", b"v" * 1000), max_bytes=100_000, reason_chars=100
    )
    assert (key, value) == (b"k", b"v" * 1000)
    assert DLQ_TRUNCATED_HEADER not in dict(headers)


def test_an_oversize_original_keeps_a_prefix_its_size_and_hash() -> None:
    original_value = bytes(range(256)) * 8000  # ~2 MB
    key, value, headers = dead_letter_record(
        _letter(b"key", original_value), max_bytes=100_000, reason_chars=100
    )
    found = dict(headers)
    assert len(key or b"") + len(value or b"") + sum(len(v) for v in found.values()) <= 100_000
    assert value == original_value[: len(value or b"")] and key == b"key"
    assert found[DLQ_TRUNCATED_HEADER] == b"1"
    assert found[DLQ_ORIGINAL_SIZE_HEADER] == f"3,{len(original_value)}".encode()
    digest = hashlib.sha256(b"key\x00" + original_value).hexdigest().encode()
    assert found[DLQ_ORIGINAL_SHA256_HEADER] == digest


def test_a_reason_that_echoes_a_huge_value_is_cut() -> None:
    _, _, headers = dead_letter_record(
        _letter(b"k", b"v", reason="bad value " + "x" * 5_000_000),
        max_bytes=100_000,
        reason_chars=200,
    )
    reason = dict(headers)[DLQ_ERROR_HEADER]
    assert len(reason) <= 200 and reason.startswith(b"bad value xxx")


def test_a_batch_commits_one_past_its_last_offset_per_partition() -> None:
    batch = [
        RawMessage("t", 0, 5, None, b"", 0.0),
        RawMessage("t", 1, 9, None, b"", 0.0),
        RawMessage("t", 0, 6, None, b"", 0.0),
    ]
    assert next_offsets(batch) == {("t", 0): 7, ("t", 1): 10}
