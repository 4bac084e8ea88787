"""A local PostgreSQL for the shared access store and the multi-host tests: `reporting-proxy postgres`."""
