"""The one place where krakenflow changes aiokafka's behaviour through names aiokafka does not publish.

**The back-off between back-to-back transactions.** After a commit, the transaction coordinator is
still writing its markers for a moment; the next transaction's first AddPartitionsToTxn is answered
CONCURRENT_TRANSACTIONS meanwhile, and aiokafka sleeps a fixed ``BACKOFF_OVERRIDE`` (20 ms,
``aiokafka/producer/sender.py``) before asking again. A worker that commits a batch as soon as the
previous commit ends pays that sleep on every commit: it, not Kafka, set the exactly-once latency floor
(transactional group commit at 1k records/s, read_committed, p50 / p99: 27.5 / 54 ms with 20 ms, 6.1 /
20.8 ms with 1 ms; ``../shared/apache-kafka.md``). The coordinator answers within a millisecond or
two, so asking again after 1 ms costs a request or two, not a busy loop.

aiokafka reads the module global on every retry, so setting it changes every transactional producer
of the process. The versions this was checked against are pinned in ``pyproject.toml``;
``tests/unit/app/test_kafka_internals.py`` fails when the name or its use in aiokafka changes.
"""

from __future__ import annotations

import aiokafka
import aiokafka.producer.sender as _sender

#: the aiokafka version whose private names this module relies on (also pinned in pyproject.toml)
AIOKAFKA_VERSION = "0.14.0"

#: seconds between asks while the coordinator still completes the previous transaction
TRANSACTION_BACKOFF = 0.001

#: the private name: a module global of aiokafka's sender, returned by AddPartitionsToTxnHandler
BACKOFF_NAME = "BACKOFF_OVERRIDE"


def shorten_transaction_backoff(seconds: float = TRANSACTION_BACKOFF) -> None:
    """Make aiokafka ask again after ``seconds`` (not 20 ms) when the previous transaction is still
    completing. Idempotent; raises if aiokafka no longer has the name (an unchecked upgrade)."""
    if not hasattr(_sender, BACKOFF_NAME):
        raise RuntimeError(f"aiokafka {aiokafka.__version__} has no {_sender.__name__}.{BACKOFF_NAME} (checked "
                           f"against {AIOKAFKA_VERSION}); review app/kafka_internals.py before upgrading aiokafka")
    setattr(_sender, BACKOFF_NAME, seconds)

