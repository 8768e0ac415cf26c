"""State changelogs: what the worker knows, rebuilt from Kafka (docs/architecture.md).

- `signals`: every worker's trending and co-visitation deltas, applied by every worker;
  snapshots on `signals.snapshots` (signals.py, snapshots.py).
- `item-vectors` (embedded store): each embedded item once, materialised by every worker
  into its local store (catalogue.py).
- `user-state` (embedded store): each saved user state, on its events partition; restored
  into the local store when the partition is assigned (users.py).

`changelog_messages` turns a batch outcome into these records; the pipeline publishes them
with the answers in the checkpoint's deliver step, before the commit.
"""

from __future__ import annotations

from worker.changelog.catalogue import ORIGIN_HEADER, CatalogueReplica
from worker.changelog.checkpoints import OffsetFile
from worker.changelog.codec import encode_item, encode_user
from worker.changelog.signals import SignalsFeed, delta_message
from worker.changelog.users import UserStateRestorer
from worker.records import BatchResult, OutMessage
from worker.settings import Settings

__all__ = [
    "CatalogueReplica",
    "OffsetFile",
    "SignalsFeed",
    "UserStateRestorer",
    "changelog_messages",
]


def changelog_messages(
    outcome: BatchResult, settings: Settings, *, batch_id: str, origin: bytes | None
) -> list[OutMessage]:
    """The signal delta, and with `origin` (embedded store: this worker's id) the item
    vectors, item tombstones and user states of one batch."""
    out = []
    delta = delta_message(settings, batch_id, outcome.signals)
    if delta is not None:
        out.append(delta)
    if origin is None:
        return out
    headers = ((ORIGIN_HEADER, origin),)
    for item in outcome.items_written:
        out.append(
            OutMessage(
                settings.item_vectors_topic,
                item.item_id.encode(),
                encode_item(item),
                headers=headers,
            )
        )
    for item_id in outcome.items_deleted:
        out.append(OutMessage(settings.item_vectors_topic, item_id.encode(), None, headers=headers))
    for erasure in outcome.erasures:  # before any state made after the forget
        out.append(
            OutMessage(
                settings.user_state_topic,
                erasure.user_id.encode(),
                None,
                partition=erasure.partition,
            )
        )
    for state in outcome.user_states:
        out.append(
            OutMessage(
                settings.user_state_topic,
                state.user_id.encode(),
                encode_user(state),
                partition=outcome.user_partitions.get(state.user_id),
            )
        )
    return out
