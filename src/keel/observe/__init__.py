"""Observability: OpenTelemetry traces stored for the dashboard, Prometheus metrics, feedback, usage."""
