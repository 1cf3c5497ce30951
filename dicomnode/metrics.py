"""Prometheus metrics (the official client library): what the node counts as it works, and what
it reads from the database when scraped.

Counters and histograms live in this process (``prometheus_client``'s default registry); the
gauges come from the database at each scrape (``DatabaseCollector``), so they are right whichever
process (serve, worker) changed a row.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from dicomnode.db import Job, JobState, OutboxItem, Series, utcnow

STORES = Counter("spinenode_instances_received", "C-STORE requests answered, by DICOM status", ["status"])
STAGE_SECONDS = Histogram("spinenode_stage_seconds", "Duration of each analysis stage of a finished job",
                          ["stage"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64))


def count_store(status: int) -> None:
    STORES.labels(status=f"0x{status:04X}").inc()


def observe_stages(timings_s: dict[str, float]) -> None:
    for stage, seconds in timings_s.items():
        STAGE_SECONDS.labels(stage=stage).observe(seconds)


class DatabaseCollector(Collector):
    """Series, jobs and outbox rows by state, and the age of the oldest job waiting, per scrape."""

    def __init__(self, sessions: sessionmaker) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.sessions() as session:
            jobs = GaugeMetricFamily("spinenode_jobs", "Jobs by state", labels=["state"])
            for state, n in session.execute(select(Job.state, func.count()).group_by(Job.state)):
                jobs.add_metric([str(state)], n)
            series = GaugeMetricFamily("spinenode_series", "Series by state", labels=["state"])
            for state, n in session.execute(select(Series.state, func.count()).group_by(Series.state)):
                series.add_metric([str(state)], n)
            outbox = GaugeMetricFamily("spinenode_outbox", "Results to send, by destination and state",
                                       labels=["destination", "state"])
            for dest, state, n in session.execute(select(OutboxItem.destination, OutboxItem.state, func.count())
                                                  .group_by(OutboxItem.destination, OutboxItem.state)):
                outbox.add_metric([dest, str(state)], n)
            oldest = session.scalar(select(func.min(Job.created_at)).where(Job.state == JobState.QUEUED))
        age = GaugeMetricFamily("spinenode_queue_oldest_seconds", "Age of the oldest queued job (0: none)")
        age.add_metric([], 0.0 if oldest is None else (utcnow() - oldest.replace(tzinfo=None)).total_seconds())
        yield from (jobs, series, outbox, age)
