"""`GET /metrics`: the shared Redis counters and the queues' state in Prometheus' text format."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from redis import Redis
from rq import Queue, Worker

from service.metrics import Metrics
from service.settings import Names

# counter name in Redis -> (Prometheus name, help, label names)
COUNTERS = {
    "received": ("tickets_webhooks_received", "Webhook requests received for an enabled system.", ["system"]),
    "rejected": ("tickets_webhooks_rejected", "Webhook requests refused, by reason.", ["system", "reason"]),
    "ignored": (
        "tickets_webhooks_ignored",
        "Authenticated webhooks about nothing we act on (acknowledged).",
        ["system"],
    ),
    "enqueued": ("tickets_jobs_enqueued", "Sync jobs added to a queue.", ["system", "queue"]),
    "coalesced": (
        "tickets_events_coalesced",
        "Events that added no job: the ticket's job was waiting (queued) or a re-run was scheduled (running).",
        ["system", "state"],
    ),
    "job": (
        "tickets_job_outcomes",
        "Finished job runs, by outcome (written, unchanged, ..., retried, failed).",
        ["system", "outcome"],
    ),
    "job_seconds_sum": ("tickets_job_duration_seconds", "Time spent in successful sync jobs.", ["system"]),
}


class PipelineCollector:
    def __init__(self, connection: Redis, names: Names) -> None:
        self.connection = connection
        self.names = names
        self.metrics = Metrics(connection, names)

    def collect(self) -> Iterator[Metric]:
        families = {key: CounterMetricFamily(name, doc, labels=labels) for key, (name, doc, labels) in COUNTERS.items()}
        for (name, *labels), value in sorted(self.metrics.read().items()):
            family = families.get(name)
            if family is not None and len(labels) == len(COUNTERS[name][2]):
                family.add_metric(labels, value)
        yield from families.values()

        depth = GaugeMetricFamily("tickets_queue_depth", "Jobs waiting in a queue.", labels=["queue"])
        scheduled = GaugeMetricFamily("tickets_jobs_scheduled", "Jobs waiting for a delayed retry.", labels=["queue"])
        started = GaugeMetricFamily("tickets_jobs_running", "Jobs being run by a worker.", labels=["queue"])
        failed = GaugeMetricFamily("tickets_jobs_failed", "Jobs in the failed registry.", labels=["queue"])
        for name in self.names.queues:
            queue = Queue(name, connection=self.connection)
            depth.add_metric([name], queue.count)
            scheduled.add_metric([name], queue.scheduled_job_registry.count)
            started.add_metric([name], queue.started_job_registry.count)
            failed.add_metric([name], queue.failed_job_registry.count)
        workers = GaugeMetricFamily("tickets_workers", "RQ workers registered on the pipeline's queues.")
        workers.add_metric([], len(Worker.all(queue=Queue(self.names.live_queue, connection=self.connection))))
        yield from (depth, scheduled, started, failed, workers)


def render(connection: Redis, names: Names) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(connection, names))
    return generate_latest(registry)
