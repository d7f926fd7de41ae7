"""Prometheus metrics of one API process (its own registry, so tests can build many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hub_http_requests_total", "HTTP requests", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "hub_http_request_seconds", "HTTP request latency", ["route"], registry=self.registry
        )
        self.messages = Counter(
            "hub_messages_recorded_total", "Messages recorded", ["type"], registry=self.registry
        )
        self.lag = Gauge(
            "hub_projection_lag_events",
            "Events recorded but not yet in a view",
            ["view"],
            registry=self.registry,
        )
