"""`make bench`: the performance suite of reporting-proxy (see README, "Performance")."""
