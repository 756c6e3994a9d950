"""Operating the worker: Prometheus metrics, JSON logs, garbage-collector tuning."""
