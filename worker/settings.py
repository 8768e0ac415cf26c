"""One typed settings object, read from the environment (12-factor).

Built once in `main()` and passed down. Every field maps to the upper-case environment
variable of the same name (`kafka_bootstrap_servers` -> `KAFKA_BOOTSTRAP_SERVERS`).
A service left unset (`KAFKA_BOOTSTRAP_SERVERS`, `TRITON_URL`, `QDRANT_URL`) means "use the
local default": a broker and Triton started by `worker.stack`, Qdrant Edge on disk.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from worker.variant_spec import VariantSpec

EventType = Literal["view", "click", "like", "share", "purchase", "skip", "dislike", "rating"]

DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 0.3,
    "click": 1.0,
    "like": 2.0,
    "share": 2.0,
    "purchase": 3.0,
    "skip": -0.5,
    "dislike": -2.0,
    "rating": 1.0,  # scaled by (value - 2.5) / 2.5: 1-2 stars negative, 3-5 positive
}


class SettingsError(ValueError):
    """The environment holds a missing or malformed setting; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # --- Kafka ---------------------------------------------------------------------------
    kafka_bootstrap_servers: str | None = None  # "host:port[,host:port]"; None -> local broker
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # TLS (SSL, SASL_SSL): the CA that signed the brokers' certificates (the system store
    # otherwise), a client certificate and key for mutual TLS, and hostname checking.
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_check_hostname: bool = True
    items_topic: str = "items"
    events_topic: str = "user-events"
    recommendations_topic: str = "recommendations"
    # Optional business rules per item (worker/rules.py), compacted, keyed by item_id.
    item_rules_topic: str = "item-rules"
    # Confirmations of user erasures (a `forget` event or a tombstone on user-events).
    user_erasures_topic: str = "user-erasures"
    items_dlq_topic: str = "items.dlq"
    events_dlq_topic: str = "user-events.dlq"
    topic_partitions: int = Field(default=4, ge=1)
    # State changelogs (docs/architecture.md). Every worker reads every worker's signal
    # deltas (trending, co-visitation) from `signals_topic`; the worker that owns events
    # partition 0 writes a snapshot of them every `signals_snapshot_interval_s`, so a
    # restart replays minutes of deltas, not their history.
    signals_topic: str = "signals"
    signals_snapshots_topic: str = "signals.snapshots"
    signals_snapshot_interval_s: float = Field(default=60.0, gt=0)
    # How long the broker keeps signal deltas and snapshots (longer than any outage the
    # signals should survive; topics are created with it).
    signals_retention_s: float = Field(default=7 * 86400.0, gt=0)
    # Embedded store only (no QDRANT_URL): embedded item vectors and user states also go to
    # these compacted topics, so every worker holds the whole catalogue (embedded once) and
    # restores the users of the events partitions it is assigned.
    item_vectors_topic: str = "item-vectors"
    user_state_topic: str = "user-state"
    consumer_group: str = "streamrec-worker"
    # The broker holds a fetch of the events topic up to this long when no data is waiting;
    # the clients' 500 ms default would dominate end-to-end latency on a broker that holds the
    # fetch for the whole wait (the local one). Apache Kafka answers as soon as data arrives,
    # so there a longer wait costs no latency and saves empty fetches.
    fetch_max_wait_ms: int = Field(default=10, ge=0, le=5000)
    # The same for the items topic and the feeds written seldom (item rules, erasures, other
    # workers' item vectors): an empty fetch costs ~0.5 ms of CPU (100 a second were 5% of a
    # core), and neither path answers within milliseconds. (The signals feed, written with
    # every batch, keeps FETCH_MAX_WAIT_MS, at least 50 ms.)
    items_fetch_max_wait_ms: int = Field(default=100, ge=0, le=5000)
    feeds_fetch_max_wait_ms: int = Field(default=250, ge=0, le=5000)
    # Each micro-batch's outputs are handed to the producer at once: 1 ms of linger saved
    # neither CPU nor publish time (two runs each at 300 events/s), only delays answers.
    producer_linger_ms: int = Field(default=0, ge=0, le=1000)
    session_timeout_s: float = Field(default=2.0, gt=0)
    heartbeat_interval_s: float = Field(default=0.3, gt=0)
    # Where a new consumer group starts.
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    # Where a partition resumes when its position is outside the log (the broker lost its
    # data, or retention deleted unread messages): logged, streamrec_offset_resets_total.
    offset_out_of_range: Literal["earliest", "latest"] = "earliest"
    kafka_request_timeout_s: float = Field(default=30.0, gt=0)
    # How often the worker checks that its topics exist (re-creating lost ones).
    topic_check_interval_s: float = Field(default=5.0, gt=0)
    # Dead letters: an original larger than this keeps a prefix plus its size and hash
    # (below the producer's 1 MiB request limit and Kafka's default message.max.bytes);
    # reasons are cut to `dlq_reason_chars`.
    dlq_max_bytes: int = Field(default=900_000, ge=8192, le=100_000_000)
    dlq_reason_chars: int = Field(default=1000, ge=64, le=100_000)

    # --- micro-batching ------------------------------------------------------------------
    items_batch_size: int = Field(default=64, ge=1, le=4096)
    items_batch_wait_s: float = Field(default=0.02, gt=0, le=10)
    events_batch_size: int = Field(default=64, ge=1, le=4096)
    # Waited out only from 100 events/s (worker/batching.py): not at a low rate. At 300
    # events/s, 50 ms against 20: ~20% less CPU per event for ~15 ms more p50 (README).
    events_batch_wait_s: float = Field(default=0.05, gt=0, le=10)
    # Several events of one user in a micro-batch get one answer listing all their ids.
    coalesce_events: bool = True

    # --- Triton --------------------------------------------------------------------------
    triton_url: str | None = None  # "host:port" of the HTTP endpoint; None -> local tritonserver
    triton_timeout_s: float = Field(default=30.0, gt=0)
    # gRPC: TRITON_URL is then the gRPC endpoint (host:8001). TLS for either protocol, with
    # the CA that signed the server's certificate and a client certificate for mutual TLS.
    triton_protocol: Literal["http", "grpc"] = "http"
    triton_tls: bool = False
    triton_tls_cafile: Path | None = None
    triton_tls_certfile: Path | None = None
    triton_tls_keyfile: Path | None = None
    triton_item_model: str = "item_embedder"
    triton_user_model: str = "user_encoder"
    # How often the worker compares the item space Triton serves with its store's; another
    # one (a new fusion or encoder version) starts a background re-embed of the catalogue
    # (embedded store: worker/reembed.py).
    reembed_check_interval_s: float = Field(default=5.0, gt=0)

    # --- media by URL (image_url, audio_url) ----------------------------------------------
    # Only public addresses are fetched; these hosts / networks (CIDR) are allowed besides,
    # e.g. MEDIA_ALLOW_HOSTS='["cdn.internal"]', MEDIA_ALLOW_NETWORKS='["10.20.0.0/16"]'.
    media_allow_hosts: list[str] = Field(default_factory=list)
    media_allow_networks: list[str] = Field(default_factory=list)
    media_timeout_s: float = Field(default=10.0, gt=0)  # per URL, redirects included
    media_read_timeout_s: float = Field(default=5.0, gt=0)  # longest wait for more bytes
    media_max_redirects: int = Field(default=3, ge=0, le=10)

    # --- Qdrant --------------------------------------------------------------------------
    qdrant_url: str | None = None  # None -> embedded Qdrant Edge under data_dir
    qdrant_api_key: SecretStr | None = None
    # An API key over plain http travels in clear text: refused unless this says otherwise.
    qdrant_allow_insecure_api_key: bool = False
    qdrant_timeout_s: float = Field(default=10.0, gt=0)
    items_collection: str = "items"
    users_collection: str = "users"
    # Embedded store: items (users written since the last build, or a fifth of the users) out
    # of the HNSW index before a copy is indexed in another process and swapped in.
    index_after_items: int = Field(default=10_000, ge=100)
    users_index_after: int = Field(default=20_000, ge=100)
    index_check_interval_s: float = Field(default=30.0, gt=0)
    # Compression of the indexed item vectors, memory-mapped like the originals: searches
    # walk the graph on the compressed vectors and rescore `items_oversampling` x k
    # candidates with the originals (the choice measured: README "Catalogue size").
    items_quantization: Literal["turbo4", "int8", "none"] = "turbo4"
    items_oversampling: float = Field(default=1.5, ge=1.0, le=10.0)
    # Embedded store: each items collection in a process of its own, served over a socket.
    # The engine holds the GIL for a whole call, and a swap's load of the indexed copy
    # (0.4-0.5 s at a million items) froze the worker; in a child it does not, at the cost
    # of pickling each batch's calls (10-25% more CPU per search at 2,000 items). "auto":
    # the collections counted at `items_process_from_items` items or more when opened (at
    # start, and each index build's copy), so a growing catalogue moves at its next build.
    items_process: bool | Literal["auto"] = "auto"
    items_process_from_items: int = Field(default=100_000, ge=0)
    # Embedded store, least recently used out: items with their vectors (~1.9 KB each; a hit
    # outside costs ~20 µs), and the users' states (up to ~80 KB a user at the default
    # windows; a read outside costs ~0.25 ms a user there).
    item_cache_size: int = Field(default=100_000, ge=0)
    user_cache_size: int = Field(default=2_000, ge=0)
    # Embedded store: up to this many items, all cached, are scanned in process (0: never).
    exact_search_max_items: int = Field(default=10_000, ge=0)
    data_dir: Path = Path(".data")
    embedding_dim: int = Field(default=256, ge=2)
    # Candidates an HNSW search visits (at least limit x oversampling: 75 for the pool of
    # 50). At 1M items like the trained ones, two builds gave recall@50 0.964/0.987 at 64,
    # 0.984/0.989 at 128 (0.58-0.62 and 0.72-0.78 CPU ms per query): 128 keeps a margin for
    # a worse build or less structured vectors (README "Catalogue size").
    hnsw_ef: int = Field(default=128, ge=1)

    # --- recommendation behaviour --------------------------------------------------------
    recommendations_k: int = Field(default=10, ge=1, le=1000)
    history_window: int = Field(default=50, ge=1, le=1000)  # interactions fed to user_encoder
    seen_window: int = Field(default=1000, ge=1)  # item ids excluded from a user's results
    recency_half_life_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    # JSON object in the environment, e.g. EVENT_WEIGHTS='{"view": 0.5, "skip": -1}'.
    # Keys are event types (checked below); plain str keys keep the mapping usable with an
    # event's `type`.
    event_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    # Events dated more than this ahead of the worker's clock are dead-lettered (clock skew
    # between producers and workers is allowed for; a far-future event would otherwise
    # distort every time-decayed signal).
    event_max_future_s: float = Field(default=300.0, ge=0)
    # Events older than this (by the worker's clock) are dead-lettered; unset: any past (a
    # replay of old data, like the MovieLens demo, needs that).
    event_max_age_s: float | None = Field(default=None, gt=0)
    # Candidates fetched per user (nearest to the user vector) before re-ranking to k.
    candidate_pool: int = Field(default=50, ge=1, le=1000)
    # Trending = time-decayed count of consumption events (skips and dislikes do not count),
    # kept in memory from the event stream; the top `trending_size` items are candidates.
    trending_half_life_s: float = Field(default=24 * 3600.0, gt=0)
    trending_size: int = Field(default=30, ge=0, le=10_000)
    # Weight of normalised trending popularity in the score of a user with no history (on
    # the 0..1 relevance scale: the best candidate's cosine maps to 1, the
    # candidate_pool-th to 0); it halves at `popularity_history` interactions.
    popularity_weight: float = Field(default=0.3, ge=0)
    popularity_history: float = Field(default=5.0, gt=0)
    # Score bonus for new items: freshness_boost * 0.5 ** (item age / half-life).
    freshness_boost: float = Field(default=0.05, ge=0)
    freshness_half_life_s: float = Field(default=3 * 24 * 3600.0, gt=0)
    # Maximal marginal relevance: 1 ranks by score alone, lower values trade score for
    # diversity (items unlike those already listed).
    mmr_lambda: float = Field(default=0.9, ge=0, le=1)
    # Penalty on items like those the user disliked or skipped (or rated 1-2 stars): score
    # minus this x the cosine to the closest one (scores are on a 0..1 relevance scale).
    negative_feedback_weight: float = Field(default=0.5, ge=0)
    # Co-visitation (items consumed by the same users, counted from the event stream):
    # each consumption pairs with the user's last `covisitation_history` consumed items,
    # each item has 2 x `covisitation_neighbours` partner slots (a new partner of a full row
    # replaces its weakest), and a user's `covisitation_candidates` best co-visited items
    # join the candidates; at `covisitation_items` tracked items the least consumed quarter
    # is forgotten (memory: items x 2 x neighbours x 8 bytes). Its weight is on the 0..1
    # relevance scale (the user's best co-visited candidate gets the full weight); 0 turns
    # it off.
    covisitation_weight: float = Field(default=1.0, ge=0)
    covisitation_history: int = Field(default=20, ge=1, le=1000)
    covisitation_neighbours: int = Field(default=100, ge=1, le=10_000)
    covisitation_candidates: int = Field(default=20, ge=0, le=1000)
    covisitation_items: int = Field(default=10_000, ge=1)
    # Optional constraints on every recommendation (an event's `context` can narrow them):
    # JSON list of categories, e.g. RECOMMEND_CATEGORIES='["Comedy"]'; only items created
    # within FRESHNESS_WINDOW_S seconds.
    recommend_categories: list[str] | None = None
    freshness_window_s: float | None = Field(default=None, gt=0)
    # New-item fan-out: a freshly indexed item (created at most `fanout_max_item_age_s` ago)
    # is matched against the nearest user vectors; up to `fanout_users_per_item` of them get
    # refreshed recommendations when it enters their top k, each user at most once per
    # `fanout_user_interval_s`. 0 users turns fan-out off.
    fanout_users_per_item: int = Field(default=20, ge=0, le=1000)
    fanout_user_interval_s: float = Field(default=60.0, ge=0)
    fanout_max_item_age_s: float = Field(default=24 * 3600.0, gt=0)

    # A/B variants: JSON list, e.g. VARIANTS='[{"name": "a", "weight": 1},
    # {"name": "b", "weight": 1, "ranking": {"mmr_lambda": 0.6}}]' (see worker/variants.py);
    # empty: every user in "default".
    variants: list[VariantSpec] = Field(default_factory=list)

    # --- failures and shutdown -------------------------------------------------------------
    # A batch failing on infrastructure (broker, Triton, Qdrant) is retried; between tries
    # the failing dependency is probed every `retry_probe_interval_s`, and the batch retried
    # as soon as it answers, or after the backoff (doubling up to `retry_backoff_max_s`).
    retry_backoff_max_s: float = Field(default=5.0, gt=0)
    retry_probe_interval_s: float = Field(default=0.25, gt=0)
    # Triton and the store are also probed this often in the background, so readiness
    # follows them while no batch runs into a failure.
    dependency_check_interval_s: float = Field(default=1.0, gt=0)
    # SIGTERM: stop fetching, let the in-flight batch finish for up to this long (a batch
    # waiting on a failing dependency is abandoned at once), commit what was answered, exit.
    shutdown_timeout_s: float = Field(default=30.0, gt=0)

    # --- process -------------------------------------------------------------------------
    # Python's cyclic GC runs a young-generation pass every `gc_threshold` net allocations
    # (default 700); a micro-batch allocates thousands of short-lived objects, so it would
    # collect many times per batch, each pass also walking what survived into the older
    # generations. Objects alive once the worker is ready are frozen. 0: Python's defaults.
    gc_threshold: int = Field(default=50_000, ge=0)
    # uvloop: the asyncio loop in C (libuv); the standard one costs ~2% more CPU per event.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    # --- observability -------------------------------------------------------------------
    metrics_port: int = Field(default=9464, ge=0, le=65535)  # 0 -> pick a free port
    # Loopback by default: /metrics is not for the world. Containers set 0.0.0.0 (the
    # Dockerfile does) so Prometheus on the container network can scrape it.
    metrics_host: str = "127.0.0.1"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Keys the user hashes of erasure confirmations (worker/erasure.py); unset: unkeyed.
    user_hash_key: SecretStr | None = None

    # --- local stack (used only for services left unset) ---------------------------------
    stack_dir: Path = Path(".stack")  # logs and scratch files of locally started services
    triton_repo: Path = Path("triton_repo")

    @field_validator("event_weights", mode="after")
    @classmethod
    def _merge_weights(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(DEFAULT_EVENT_WEIGHTS))
        if unknown:
            raise ValueError(
                f"unknown event types {unknown}; known: {sorted(DEFAULT_EVENT_WEIGHTS)}"
            )
        if not all(math.isfinite(weight) for weight in value.values()):
            raise ValueError("weights must be finite numbers")
        return {**DEFAULT_EVENT_WEIGHTS, **value}  # types left out keep their default

    @field_validator("media_allow_networks", mode="after")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not a network like 10.0.0.0/8") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.heartbeat_interval_s >= self.session_timeout_s:
            raise ValueError("HEARTBEAT_INTERVAL_S must be smaller than SESSION_TIMEOUT_S")
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "KAFKA_SECURITY_PROTOCOL=SASL_* needs KAFKA_SASL_MECHANISM, "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        for name in (
            "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile",
            "triton_tls_cafile", "triton_tls_certfile", "triton_tls_keyfile",
        ):  # fmt: skip
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name.upper()}={path} is not a readable file")
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise ValueError("KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE")
        if (
            self.qdrant_api_key is not None
            and (self.qdrant_url or "").lower().startswith("http://")
            and not self.qdrant_allow_insecure_api_key
        ):
            raise ValueError(
                "QDRANT_API_KEY over plain http would travel in clear text: use an https "
                "QDRANT_URL (or set QDRANT_ALLOW_INSECURE_API_KEY=true on a trusted network)"
            )
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"VARIANTS names must be unique, got {names}")
        if self.kafka_bootstrap_servers is not None:
            for server in self.kafka_bootstrap_servers.split(","):
                _host_port("KAFKA_BOOTSTRAP_SERVERS entry", server.strip())
        if self.triton_url is not None:
            _host_port("TRITON_URL", self.triton_url)
        if self.qdrant_url is not None:
            url = urlparse(self.qdrant_url)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ValueError(
                    f"QDRANT_URL {self.qdrant_url!r} is not an http(s) URL (http://host:6333)"
                )
        return self


def _host_port(name: str, value: str) -> None:
    host, sep, port = value.rpartition(":")
    if "://" in value or not sep or not host or not port.isdigit() or " " in value:
        raise ValueError(f"{name} {value!r} is not host:port (no scheme, e.g. triton:8000)")


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Variables that look like a misspelt setting: one line each, naming the likely one."""
    known = [name.upper() for name in Settings.model_fields]
    lines = []
    for name in sorted(environ):
        upper = name.upper()
        if upper in known:
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.85)
        if close:
            lines.append(f"unknown variable {name}: did you mean {close[0]}?")
    return lines


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise SettingsError naming every bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except PydanticSettingsError as exc:
        # A value the environment source could not even decode (e.g. EVENT_WEIGHTS='{bad').
        raise SettingsError(f"invalid configuration:\n  {exc}") from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]).upper() or "settings"
            problems.append(f"{where}: {err['msg']}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from None
