"""``Bench`` served with an OpenTelemetry SDK set up, for ``benchmarks/observability.py``.

The provider has no span processor: spans are made, timed and dropped, which is the cost
of tracing itself without any exporter's.
"""

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from benchmarks.servers import Bench

trace.set_tracer_provider(TracerProvider())

__all__ = ["Bench"]
