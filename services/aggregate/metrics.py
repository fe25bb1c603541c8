"""Every metric the aggregator exposes, in one place (STYLE §11).

Labels are bounded by construction: `outcome` comes from the enum below, `reason` from dead_letters.py's
`Reason`, `partition` from the topic's partition count, a flag's `kind` and `importance` from the table's
CHECKs. Operators watch five things here: throughput (events by outcome), poison (dead letters by reason, and
how many still wait for their topic), how far behind the log the aggregator is (lag per partition), how old a
figure is when a reader can first see it (freshness, the DESIGN §6 p99 ≤ 1 s promise) and the quality flags
that wait for a reviewer.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from services.aggregate.dead_letters import Reason


class EventOutcome(StrEnum):
    """What became of a Kafka message: the `outcome` label of d06_aggregate_events_total."""

    APPLIED = "applied"  # changed the reported value of its key
    STALE = "stale"  # a newer seq already won (replay, duplicate, reordering)
    DEAD_LETTERED = "dead_lettered"
    REDELIVERED = "redelivered"  # below the offset already stored for its partition: not even parsed


# Every (kind, importance, acknowledged) of d06_quality_flags_open: the CHECKs of quality_flags (migration 0007).
FLAG_SERIES = [(kind, importance, acknowledged) for kind in ("rule", "outlier")
               for importance in ("high", "medium", "low") for acknowledged in ("true", "false")]


class WeightedHistogram(Collector):
    """A histogram that takes many identical observations at once.

    Freshness is observed per applied event, a whole batch of them at once, and the events of one ingest
    request share one `accepted_at`; `Histogram.observe` one by one would cost a measurable share of the
    throughput (docs/performance.md, "Figures moved out of comments").
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self._name = name
        self._doc = documentation
        self._bounds = list(buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last one is +Inf
        self._sum = 0.0

    def observe(self, value: float, weight: int = 1) -> None:
        self._counts[bisect_left(self._bounds, value)] += weight
        self._sum += value * weight

    def collect(self) -> Iterable[Metric]:
        cumulative, running = [], 0
        for bound, count in zip([*self._bounds, float("inf")], self._counts, strict=True):
            running += count
            cumulative.append((_le(bound), float(running)))
        yield HistogramMetricFamily(self._name, self._doc, buckets=cumulative, sum_value=self._sum)


def _le(bound: float) -> str:
    """The `le` label as Prometheus writes it (`+Inf`, `0.5`, `1.0`)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


class AggregateMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "d06_aggregate_events_total",
            "Kafka messages handled, by outcome (applied, stale, dead_lettered, redelivered).",
            ["outcome"], registry=registry,
        )
        for outcome in EventOutcome:
            self.events.labels(outcome.value)  # every series exists from the start, at 0
        self.dead_letters = Counter(
            "d06_aggregate_dead_letters_total",
            "Messages set aside as poison, by reason; they never block their partition.",
            ["reason"], registry=registry,
        )
        for reason in Reason:
            self.dead_letters.labels(reason.value)
        self.rows_written = Counter(
            "d06_aggregate_rows_written_total",
            "Rollup rows upserted (a reported unit and every ancestor its change reached).",
            registry=registry,
        )
        self.batch_size = Histogram(
            "d06_aggregate_batch_size",
            "Messages per batch taken from Kafka (all partitions together, one transaction).",
            registry=registry,
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 20000, 50000),
        )
        self.batch_seconds = Histogram(
            "d06_aggregate_batch_duration_seconds",
            "Time of one batch transaction, from BEGIN to COMMIT (the apply latency).",
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.batch_failures = Counter(
            "d06_aggregate_batch_failures_total",
            "Batch transactions rolled back, by kind: transient (retried) or content (split to isolate).",
            ["kind"], registry=registry,
        )
        self.lag = Gauge(
            "d06_aggregate_consumer_lag",
            "Messages in the partition not yet applied: high watermark minus the next offset to apply.",
            ["partition"], registry=registry,
        )
        self.epoch = Gauge(
            "d06_aggregate_log_epoch",
            "The topic epoch the consumer reads under; it moves when the relay finds the broker lost its log.",
            registry=registry,
        )
        self.epoch_changes = Counter(
            "d06_aggregate_epoch_changes_total",
            "Times the consumer found a new topic epoch and re-read the new log from the beginning.",
            registry=registry,
        )
        self.dead_letter_publish_failures = Counter(
            "d06_aggregate_dead_letter_publish_failures_total",
            "Dead letters an attempt to copy to the dead-letter topic failed for, counted at every attempt "
            "(each is retried until the broker takes it; the dead_letters table is the record).",
            registry=registry,
        )
        self.dead_letters_unpublished = Gauge(
            "d06_aggregate_dead_letters_unpublished",
            "Dead letters stored in Postgres and not yet copied to the dead-letter topic.",
            registry=registry,
        )
        self.quality_flags_open = Gauge(
            "d06_quality_flags_open",
            "Quality flags open now (every unit, period and edition), by kind (rule, outlier), importance and "
            "whether a reviewer acknowledged them; counted from the table every AGGREGATE_QUALITY_GAUGE_SECONDS.",
            ["kind", "importance", "acknowledged"], registry=registry,
        )
        for kind, importance, acknowledged in FLAG_SERIES:
            self.quality_flags_open.labels(kind, importance, acknowledged)
        self.last_commit = Gauge(
            "d06_aggregate_last_commit_timestamp_seconds",
            "Unix time of the last committed batch; alert when it stops moving while lag grows.",
            registry=registry,
        )
        self.freshness = WeightedHistogram(
            "d06_aggregate_freshness_seconds",
            "Commit time of the batch minus accepted_at of the event, for applied events: how old a figure "
            "is when readers first see it.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30, 60, 300, 3600),
        )
        registry.register(self.freshness)
