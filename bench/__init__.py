"""`make bench`: the performance suite of reporting-proxy (method and latest figures: docs/performance.md)."""
