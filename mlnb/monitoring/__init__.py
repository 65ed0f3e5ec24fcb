"""Monitoring of generated services: request logs, Prometheus metrics, drift, reports."""
