"""Prometheus metrics: every metric declared once here, fed by the batch handlers' hooks.

Names use base units (`_seconds`, `_total`).
"""

from __future__ import annotations

import collections
import gc
import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Sub-millisecond to multi-second: the stages range from a dict lookup to a cold Triton call.
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages_in = Counter(
            "streamrec_messages_in_total", "Messages consumed", ["topic"], registry=r
        )
        self.messages_out = Counter(
            "streamrec_messages_out_total", "Messages produced", ["topic"], registry=r
        )
        self.messages_failed = Counter(
            "streamrec_messages_failed_total",
            "Messages sent to a dead-letter topic",
            ["topic", "stage"],
            registry=r,
        )
        self.items_indexed = Counter(
            "streamrec_items_indexed_total", "Item vectors upserted", registry=r
        )
        self.items_deleted = Counter(
            "streamrec_items_deleted_total", "Items deleted by tombstones", registry=r
        )
        self.stage_seconds = Histogram(
            "streamrec_stage_seconds",
            "Time spent per micro-batch in each stage",
            ["pipeline", "stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "streamrec_end_to_end_seconds",
            "From the event's own timestamp to its recommendation being produced",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ready = Gauge(
            "streamrec_ready",
            "1 while the worker consumes and every dependency answers",
            registry=r,
        )
        self._batch_metrics(r)
        self._product_metrics(r)
        self._fault_metrics(r)
        self._state_metrics(r)
        self._gc_started = 0.0

    def _batch_metrics(self, r: CollectorRegistry) -> None:
        """Micro-batch sizes, the arrival rate that sizes them, and retried attempts."""
        self.batch_size = Histogram(
            "streamrec_batch_size",
            "Messages per micro-batch",
            ["topic"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.arrival_rate = Gauge(
            "streamrec_arrival_rate",
            "Records a second the topic delivered lately: a micro-batch waits for its "
            "deadline only when this rate times the deadline is at least 2",
            ["topic"],
            registry=r,
        )
        self.batch_failures = Counter(
            "streamrec_batch_failures_total",
            "Micro-batch attempts that failed on infrastructure and were retried",
            ["pipeline"],
            registry=r,
        )

    def _product_metrics(self, r: CollectorRegistry) -> None:
        """Answers by A/B variant, reasons, erasures and the read API."""
        self.answers = Counter(
            "streamrec_answers_total",
            "Recommendation lists published, by A/B variant and strategy",
            ["variant", "strategy"],
            registry=r,
        )
        self.reasons = Counter(
            "streamrec_reasons_total",
            "Reasons given for listed items, by A/B variant and kind",
            ["variant", "kind"],
            registry=r,
        )
        self.erasures = Counter(
            "streamrec_erasures_total", "Users erased (forget events and tombstones)", registry=r
        )
        self.events_erased = Counter(
            "streamrec_events_erased_total",
            "Events dropped because their user was erased after them (replays included)",
            registry=r,
        )
        self.api_seconds = Histogram(
            "streamrec_api_request_seconds",
            "Read API requests, by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def _state_metrics(self, r: CollectorRegistry) -> None:
        """The state changelogs, and the process's garbage collector."""
        self.gc_seconds = Counter(
            "streamrec_gc_seconds_total",
            "Time spent in Python's cyclic garbage collector",
            ["generation"],
            registry=r,
        )
        self.changelog_bytes = Counter(
            "streamrec_changelog_bytes_total",
            "Bytes (keys and values) this worker wrote to the state changelogs",
            ["topic"],
            registry=r,
        )
        self.changelog_records_read = Counter(
            "streamrec_changelog_records_read_total",
            "Changelog records this worker read (restores and following)",
            ["topic"],
            registry=r,
        )
        self.restore_seconds = Gauge(
            "streamrec_restore_seconds",
            "How long the last restore took (signals, catalogue, users)",
            ["state"],
            registry=r,
        )
        self.user_cache_reads = Counter(
            "streamrec_user_cache_reads_total",
            "User states read, by where from (embedded store: the cache, or the engine)",
            ["result"],
            registry=r,
        )
        self._user_cache_hits = self.user_cache_reads.labels("hit")
        self._user_cache_misses = self.user_cache_reads.labels("miss")
        self._upgrade_metrics(r)
        self._index_metrics(r)

    def user_cache_read(self, hits: int, misses: int) -> None:
        self._user_cache_hits.inc(hits)
        self._user_cache_misses.inc(misses)

    def _index_metrics(self, r: CollectorRegistry) -> None:
        """The embedded store's HNSW index, built in another process."""
        self.index_builds = Counter(
            "streamrec_index_builds_total",
            "Index builds (in another process) of the items or the users collection, by outcome",
            ["collection", "outcome"],
            registry=r,
        )
        self.index_build_seconds = Gauge(
            "streamrec_index_build_seconds",
            "How long the collection's last index build took, copy and swap included",
            ["collection"],
            registry=r,
        )
        self.unindexed_items = Gauge(
            "streamrec_unindexed_items",
            "Items of the searched collection outside its HNSW index (searched exactly)",
            registry=r,
        )
        self.unindexed_users = Gauge(
            "streamrec_unindexed_users",
            "Users outside the users collection's HNSW index (the fan-out searches them exactly)",
            registry=r,
        )

    def _upgrade_metrics(self, r: CollectorRegistry) -> None:
        """Model upgrades: the catalogue re-embedded into a new item space."""
        self.reembed_items = Counter(
            "streamrec_reembed_items_total",
            "Items re-embedded into a new item space (model upgrade)",
            registry=r,
        )
        self.reembed_items_per_second = Gauge(
            "streamrec_reembed_items_per_second",
            "Items per second of the last (or running) catalogue re-embed",
            registry=r,
        )
        self.reembed_missing_items = Gauge(
            "streamrec_reembed_missing_items",
            "Items of the old item space the last re-embed found no content for (at least)",
            registry=r,
        )
        self.item_space_switches = Counter(
            "streamrec_item_space_switches_total",
            "Times the searched item collection switched to a new item space",
            registry=r,
        )
        self.user_model_fits = Gauge(
            "streamrec_user_model_fits_item_space",
            "1 if the served user model was trained on the item space Triton serves, else 0",
            registry=r,
        )
        self.user_model_fits.set(1)

    def _fault_metrics(self, r: CollectorRegistry) -> None:
        """Failures, recovery and broker data loss (see README, Delivery guarantees)."""
        self.dependency_up = Gauge(
            "streamrec_dependency_up",
            "0 while a dependency (kafka, triton, qdrant, topics) is failing",
            ["dependency"],
            registry=r,
        )
        self.infra_failures = Counter(
            "streamrec_infra_failures_total",
            "Infrastructure failures met by a batch (each is retried)",
            ["dependency"],
            registry=r,
        )
        self.batch_splits = Counter(
            "streamrec_batch_splits_total",
            "Times a batch failing on a data error was split to isolate the bad message",
            ["pipeline"],
            registry=r,
        )
        self.batches_abandoned = Counter(
            "streamrec_batches_abandoned_total",
            "In-flight batches left uncommitted at shutdown (redelivered to the next owner)",
            ["pipeline"],
            registry=r,
        )
        self.commits_refused = Counter(
            "streamrec_commits_refused_total",
            "Commits refused because a rebalance moved the partitions (their batch is "
            "redelivered: duplicates, not loss)",
            ["pipeline"],
            registry=r,
        )
        self.offset_resets = Counter(
            "streamrec_offset_resets_total",
            "Positions found outside a partition's log and reset (OFFSET_OUT_OF_RANGE)",
            ["topic"],
            registry=r,
        )
        self.broker_data_loss = Counter(
            "streamrec_broker_data_loss_total",
            "Output partitions whose offsets went backwards (the broker lost its log)",
            ["topic"],
            registry=r,
        )
        self.signal_updates = Counter(
            "streamrec_signal_updates_total",
            "Signal updates this worker's batches made (once per answered event: a retried "
            "batch adds none); every worker applies them from the signals changelog",
            ["signal"],
            registry=r,
        )
        self.topics_created = Counter(
            "streamrec_topics_created_total",
            "Topics the worker found missing and created",
            ["topic"],
            registry=r,
        )

    def watch_gc(self) -> Callable[[], None]:
        """Count collector time from here on (the worker process calls this once); returns
        the function that stops it."""
        gc.callbacks.append(self._on_gc)
        return lambda: gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            elapsed = time.perf_counter() - self._gc_started
            self.gc_seconds.labels(str(info["generation"])).inc(elapsed)

    def count_answers(self, answers: Sequence[tuple[str, str, tuple[str, ...]]]) -> None:
        """(variant, strategy, reason kinds) of each published answer."""
        answers_by = collections.Counter[tuple[str, str]]()
        reasons_by = collections.Counter[tuple[str, str]]()
        for variant, strategy, kinds in answers:
            answers_by[variant, strategy] += 1
            reasons_by.update((variant, kind) for kind in kinds)
        for labels, count in answers_by.items():
            self.answers.labels(*labels).inc(count)
        for labels, count in reasons_by.items():
            self.reasons.labels(*labels).inc(count)

    def observe_stages(self, pipeline: str, stage_seconds: dict[str, float]) -> None:
        for stage, seconds in stage_seconds.items():
            self.stage_seconds.labels(pipeline, stage).observe(seconds)
