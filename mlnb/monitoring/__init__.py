"""What a Bento runs to watch itself: request logs, Prometheus metrics, drift, alerts, labels.

A Bento ships this package with :mod:`mlnb.serving`, so nothing here imports the offline
tools: reading the logs back and drawing reports is :mod:`mlnb.reporting`.
"""
