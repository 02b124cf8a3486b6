"""What `GET /metrics` reports, in Prometheus' text format (prometheus_client, one registry per server)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServerMetrics:
    def __init__(self, queue_depth: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("llmforge_requests", "HTTP API requests answered", ["endpoint", "status"],
                                registry=self.registry)
        self.errors = Counter("llmforge_request_errors", "API requests answered with an error",
                              ["endpoint", "code"], registry=self.registry)
        self.prompt_tokens = Counter("llmforge_prompt_tokens", "prompt tokens read", ["model"], registry=self.registry)
        self.generated_tokens = Counter("llmforge_generated_tokens", "completion tokens generated", ["model"],
                                        registry=self.registry)
        self.latency = Histogram("llmforge_request_latency_seconds", "time from request to its last token",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.first_token = Histogram("llmforge_time_to_first_token_seconds", "time from request to its first token",
                                     ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("llmforge_batch_size", "requests decoded together in one batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        depth = Gauge("llmforge_queue_depth", "completions waiting or being generated", registry=self.registry)
        depth.set_function(queue_depth)

    def render(self) -> bytes:
        return generate_latest(self.registry)
