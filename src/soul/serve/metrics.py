"""Prometheus metrics of one server: jobs by status, queue length, job and chunk seconds.

A registry per app (not prometheus_client's global one), so two apps in one process (tests) never
share or double-register counters. Job counts are read from the store at scrape time: they stay
right across restarts, where an in-memory counter would start again at zero.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from soul.serve.store import JobStore

JOB_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, float("inf"))
CHUNK_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, float("inf"))


class _StoreCollector(Collector):
    """Gauges computed from the job store on every scrape."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.store.counts()
        jobs = GaugeMetricFamily("soul_jobs", "Jobs in the store, by status.", labels=["status"])
        for status, n in counts.items():
            jobs.add_metric([status], n)
        yield jobs
        yield GaugeMetricFamily("soul_queue_length", "Jobs waiting for a worker.", value=counts["queued"])


class ServeMetrics:
    """The app's registry and the histograms the workers feed."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, store: JobStore) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StoreCollector(store))
        self.job_seconds = Histogram(
            "soul_job_seconds", "Wall time of finished jobs, from start to end, by final status.", ["status"],
            buckets=JOB_BUCKETS, registry=self.registry,
        )
        self.chunk_seconds = Histogram(
            "soul_chunk_seconds", "Wall time of each sampled chunk (resumed chunks not counted).",
            buckets=CHUNK_BUCKETS, registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
