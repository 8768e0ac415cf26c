"""Dead-letter records that always fit the broker: bounded reasons, bounded bodies.

A DLQ record keeps the original key and bytes when they fit `max_bytes`; a larger original
keeps a prefix, and its size and SHA-256 travel in headers (`dlq.truncated: 1`), so the
letter itself can never be the next message that fails to publish.
"""

from __future__ import annotations

import hashlib
import time

from worker.records import DeadLetter

DLQ_ERROR_HEADER = "dlq.error"
DLQ_STAGE_HEADER = "dlq.stage"
DLQ_TRUNCATED_HEADER = "dlq.truncated"
DLQ_ORIGINAL_SIZE_HEADER = "dlq.original.size"
DLQ_ORIGINAL_SHA256_HEADER = "dlq.original.sha256"
# Room left for headers and the record's own framing under the body limit.
_HEADER_ROOM = 4096


def bounded_reason(reason: str, max_chars: int) -> str:
    """The reason cut to `max_chars` (a reason may quote the bad value it rejects)."""
    if len(reason) <= max_chars:
        return reason
    return reason[: max(max_chars - 24, 0)] + f"... [{len(reason)} chars]"


def dead_letter_record(
    letter: DeadLetter, *, max_bytes: int, reason_chars: int
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """(key, value, headers) of the DLQ record for `letter`, at most ~`max_bytes` in all."""
    src = letter.source
    key, value = src.key, src.value
    headers = [
        (DLQ_ERROR_HEADER, bounded_reason(letter.reason, reason_chars).encode()),
        (DLQ_STAGE_HEADER, letter.stage.encode()),
        ("dlq.source.topic", src.topic.encode()),
        ("dlq.source.partition", str(src.partition).encode()),
        ("dlq.source.offset", str(src.offset).encode()),
        ("dlq.failed_at", f"{time.time():.3f}".encode()),
    ]
    budget = max(max_bytes - _HEADER_ROOM, 0)
    key_len, value_len = len(key or b""), len(value or b"")
    if key_len + value_len <= budget:
        return key, value, headers
    # Keys are cut to a quarter of the budget at most; the value gets the rest.
    original = (key or b"") + b"\x00" + (value or b"")
    headers += [
        (DLQ_TRUNCATED_HEADER, b"1"),
        (DLQ_ORIGINAL_SIZE_HEADER, f"{key_len},{value_len}".encode()),
        (DLQ_ORIGINAL_SHA256_HEADER, hashlib.sha256(original).hexdigest().encode()),
    ]
    key_keep = min(key_len, budget // 4)
    value_keep = max(budget - key_keep, 0)
    return (
        None if key is None else key[:key_keep],
        None if value is None else value[:value_keep],
        headers,
    )
