"""Failure classes: what the pipeline retries and what it isolates.

Two kinds of failure reach a micro-batch:

- `InfrastructureError`: a dependency (broker, Triton, Qdrant) is unreachable, timed out or
  not ready. Nothing about the data is wrong: the batch is retried with backoff, the worker
  reports not-ready, and the failure is counted per dependency.
- anything else: a data error. Some message of the batch breaks the handler; the batch is
  split until that message is found, it is dead-lettered with stage `process`, and the rest
  of the batch is answered.

Each adapter raises its own subclass (`worker.kafka.KafkaError`, `worker.triton.
TritonUnavailable`, `worker.store.StoreUnavailable`), so the classification lives with the
code that knows the transport.
"""

from __future__ import annotations


class InfrastructureError(RuntimeError):
    """A dependency failed; retrying the same input later is expected to succeed."""

    dependency = "unknown"


class StartupError(RuntimeError):
    """The configuration does not fit the world it meets at start (a busy port, a directory
    that cannot be written, a model of another size): one line naming the variable."""
