"""Prometheus metrics of the validator (names follow Prometheus conventions).

Labels have bounded cardinality: kind, rule, severity, province (the 34
province-level codes), reason, topic and partition; never event, device or
subject ids.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from consumers.rules.catalogue import Catalogue


class PipelineMetrics:
    """All metrics of one pipeline, on their own registry (tests run several pipelines)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("faceaudit_events", "Events stored, by kind", ["kind"], registry=r)
        self.violations = Counter(
            "faceaudit_violations",
            "Violations found, by rule, severity and province (first two digits of the region)",
            ["rule", "severity", "province"],
            registry=r,
        )
        self.dead_letters = Counter(
            "faceaudit_dead_letters", "Messages kept as dead letters", ["reason"], registry=r
        )
        self.registry_records = Counter(
            "faceaudit_registry_records",
            "Consent and deployment records applied",
            ["kind"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "faceaudit_batch_duration_seconds",
            "Time to store, publish and commit one batch",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.latency = ColumnHistogram(
            "faceaudit_event_to_stored_seconds",
            "Event time to the row being stored in ClickHouse",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.lag = Gauge(
            "faceaudit_consumer_lag",
            "Messages behind the end of the partition",
            ["topic", "partition"],
            registry=r,
        )
        self.held = Gauge(
            "faceaudit_held_events",
            "Events waiting for a consent or deployment record (registry grace window)",
            registry=r,
        )
        self.insert_failures = Counter(
            "faceaudit_insert_failures", "Failed batch inserts (retried)", registry=r
        )
        self.info = Info("faceaudit_rules", "Loaded rule catalogue and profile", registry=r)
        self.signatures_required = Gauge(
            "faceaudit_signatures_required",
            "1 if registry records count only when signed, 0 under --trust none",
            registry=r,
        )

    def describe_rules(self, catalogue: Catalogue, profile: str) -> None:
        """The info metric: which catalogue (version and file hash) judges, under which profile."""
        self.info.info(
            {
                "catalogue_version": catalogue.version,
                "profile": profile,
                "catalogue_sha256": catalogue.sha256,
            }
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose /metrics on `host`:`port` (0 picks a free port); return the port."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server.server_port


class ColumnHistogram(Collector):
    """A Prometheus histogram fed a whole column of observations at once.

    `prometheus_client.Histogram` takes one value per call; a batch of tens
    of thousands of events is counted here in a few Arrow kernels instead.
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = tuple(float(bound) for bound in buckets)
        self._cumulative = [0] * len(self._bounds)
        self._count = 0
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: pa.Array | pa.ChunkedArray) -> None:
        """Count every (non-null) value of `values`."""
        count = len(values) - values.null_count
        if not count:
            return
        cumulative = [pc.sum(pc.less_equal(values, bound)).as_py() or 0 for bound in self._bounds]
        total = pc.sum(values).as_py()
        with self._lock:
            self._cumulative = [a + b for a, b in zip(self._cumulative, cumulative, strict=True)]
            self._count += count
            self._sum += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            buckets = [
                (floatToGoString(bound), cumulative)
                for bound, cumulative in zip(self._bounds, self._cumulative, strict=True)
            ]
            buckets.append(("+Inf", self._count))
            total = self._sum
        yield HistogramMetricFamily(
            self._name, self._documentation, buckets=buckets, sum_value=total
        )
