"""Every metric of the ingest service, registered on the app's own registry.

HTTP rates, errors and latencies by route come from `shared.observability`; these add what only ingest
knows. Labels are bounded sets: `group` is one of the five Project 06 utility groups (or `unknown` for
an indicator not in the catalogue), `reason` one of validation/scope/conflict/batch, `stage` one of the
relay's steps. Never label by unit, indicator or event id: their cardinality is unbounded.
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.ingest.service import Refused, Submission
from services.ingest.validation import UNKNOWN_GROUP, BatchValidation, RejectReason
from shared.catalog import Group

GROUPS = [g.value for g in Group] + [UNKNOWN_GROUP]
# `batch`: a valid event refused only because another event of its atomic batch was bad.
REJECT_REASONS = [r.value for r in RejectReason] + ["batch"]
RELAY_STAGES = ("broker", "database", "topics")


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # Submissions. A resend of a stored event_id is a duplicate, not a second acceptance:
        # accepted_total counts outbox rows, so it matches what the aggregator will apply.
        self.accepted = Counter(
            "d06_ingest_events_accepted_total", "Events newly stored in the outbox, by indicator group.",
            ["group"], registry=registry,
        )
        self.duplicates = Counter(
            "d06_ingest_events_duplicate_total",
            "Events resent with an event_id already stored with the same content (answered, not stored again).",
            ["group"], registry=registry,
        )
        self.rejected = Counter(
            "d06_ingest_events_rejected_total",
            "Events refused, by indicator group and reason (validation, scope, conflict, batch).",
            ["group", "reason"], registry=registry,
        )
        self.batch_size = Histogram(
            "d06_ingest_batch_size_events", "Events per POST /v1/events batch that passed parsing.",
            registry=registry, buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
        )

        # The outbox, as the relay sees it: a growing backlog or age means Kafka is down or slow.
        self.backlog = Gauge(
            "d06_ingest_outbox_backlog_events", "Outbox rows not yet published to Kafka.", registry=registry,
        )
        self.oldest_age = Gauge(
            "d06_ingest_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox row (0 when all are published).", registry=registry,
        )

        # The relay.
        self.published = Counter(
            "d06_ingest_relay_published_events_total", "Outbox rows published to Kafka and marked published.",
            registry=registry,
        )
        self.relay_errors = Counter(
            "d06_ingest_relay_errors_total",
            "Relay failures that made it back off, by stage (broker, database, topics).",
            ["stage"], registry=registry,
        )
        self.log_losses = Counter(
            "d06_ingest_relay_log_losses_total",
            "Times the broker was found to have lost the events topic's log (each bumps the topic epoch).",
            registry=registry,
        )
        self.requeued = Counter(
            "d06_ingest_relay_requeued_events_total",
            "Outbox rows marked for republication after a log loss (not yet applied when it was found).",
            registry=registry,
        )
        self.relay_batch_seconds = Histogram(
            "d06_ingest_relay_batch_duration_seconds",
            "Time to publish one relay batch: claim, produce, acknowledge, mark.", registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

        # Every series exists from the start, so dashboards and alerts see zeros instead of gaps.
        for group in GROUPS:
            self.accepted.labels(group)
            self.duplicates.labels(group)
            for reason in REJECT_REASONS:
                self.rejected.labels(group, reason)
        for stage in RELAY_STAGES:
            self.relay_errors.labels(stage)

    def count(self, outcome: Submission) -> None:
        """A stored batch: one increment per label set, not per event (a batch is mostly one group)."""
        for group, n in Tally(event.group for event in outcome.stored).items():
            self.accepted.labels(group).inc(n)
        for group, n in Tally(event.group for event in outcome.duplicates).items():
            self.duplicates.labels(group).inc(n)
        for (group, reason), n in Tally((r.group, r.reason.value) for r in outcome.rejected).items():
            self.rejected.labels(group, reason).inc(n)

    def count_refused(self, validation: BatchValidation, refused: Refused) -> None:
        """An atomic batch refused whole: its culprits by their reason, the valid rest as `batch`."""
        culprits = {r.index for r in refused.rejected}
        for rejection in refused.rejected:
            self.rejected.labels(rejection.group, rejection.reason.value).inc()
        for event in validation.valid:
            if event.index not in culprits:
                self.rejected.labels(event.group, "batch").inc()
