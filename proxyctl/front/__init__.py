"""The front server of `reporting-proxy serve`: nginx's configuration and the two-process supervisor."""
