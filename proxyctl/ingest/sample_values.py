"""What generated sessions are made of: weighted sample values, expanded into draw tables.

A draw table repeats each value in proportion to its weight over 2^bits slots, so the
generator picks a value with one `getrandbits(bits)` and one index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import TypeVar

TABLE_BITS = 12
COUNT_BITS = 16

T = TypeVar("T")

# (city, country, weight); None stands for an unknown value.
LOCATIONS: tuple[tuple[str | None, str | None, int], ...] = (
    ("Helsinki", "FI", 300), ("Espoo", "FI", 60), ("Tampere", "FI", 50), ("Turku", "FI", 30),
    ("Jyväskylä", "FI", 15), ("Oulu", "FI", 15), ("Stockholm", "SE", 40), ("Malmö", "SE", 10),
    ("Berlin", "DE", 40), ("München", "DE", 20), ("Zürich", "CH", 15), ("Genève", "CH", 5),
    ("London", "GB", 40), ("Paris", "FR", 30), ("Kraków", "PL", 10), ("Łódź", "PL", 5),
    ("São Paulo", "BR", 15), ("Bogotá", "CO", 5), ("New York", "US", 40),
    ("San Francisco", "US", 20), ("東京", "JP", 15), ("大阪", "JP", 5), ("Reykjavík", "IS", 3),
    (None, "FI", 30), (None, "US", 10), (None, None, 25),
)  # fmt: skip

# (browser_name, browser_version, os_name, device_type, weight)
AGENTS: tuple[tuple[str | None, str | None, str | None, str | None, int], ...] = (
    ("Chrome", "71.0.3578.98", "Windows", "desktop", 200),
    ("Chrome", "74.0.3729.169", "Windows", "desktop", 120),
    ("Chrome", "74.0.3729.157", "Mac OS X", "desktop", 60),
    ("Chrome", "76.0.3809.132", "Android", "mobile", 150),
    ("Chrome", "76.0.3809.132", "Android", "tablet", 20),
    ("Firefox", "66.0", "Windows", "desktop", 60),
    ("Firefox", "68.0", "Linux", "desktop", 25),
    ("Safari", "12.1", "Mac OS X", "desktop", 50),
    ("Mobile Safari", "12.1.2", "iOS", "mobile", 140),
    ("Mobile Safari", "12.1.2", "iOS", "tablet", 40),
    ("Edge", "18.17763", "Windows", "desktop", 40),
    ("Samsung Internet", "9.2", "Android", "mobile", 25),
    ("Opera", "60.0.3255.109", "Windows", "desktop", 10),
    ("Yandex Browser", "19.4.0", "Windows", None, 5),
    (None, None, None, None, 10),
)

IP_ORGANIZATIONS: tuple[tuple[str | None, int], ...] = (
    (None, 400), ("Elisa Oyj", 120), ("Telia Finland Oyj", 100), ("DNA Oyj", 80),
    ("Deutsche Telekom AG", 40), ("Comcast Cable Communications", 30),
    ("Université de Genève", 5), ("Kabel Deutschland GmbH", 15), ("NTT Communications", 10),
    ("Telefônica Brasil S.A.", 10), ("Helsingin yliopisto", 20),
)  # fmt: skip

PATHS: tuple[str, ...] = (
    "/", "/pricing", "/features", "/blog", "/contact", "/about", "/login", "/signup", "/docs",
    "/tuotteet", "/tuotteet/käyttöohje", "/hinnasto", "/yhteystiedot", "/ura", "/uutiset",
    "/de/preise", "/fr/société", "/ja/製品", "/support/faq", "/careers",
)  # fmt: skip
REFERRERS: tuple[tuple[str, int], ...] = (
    ("https://www.google.com/", 300), ("https://www.google.fi/", 150),
    ("https://www.bing.com/", 40), ("https://duckduckgo.com/", 25),
    ("https://www.facebook.com/", 60), ("https://t.co/", 30),
    ("https://www.linkedin.com/", 40), ("https://news.ycombinator.com/", 10),
    ("https://www.reddit.com/r/Suomi/", 5), ("https://yandex.ru/", 5),
)  # fmt: skip
SEARCH_TERMS: tuple[tuple[str, int], ...] = (
    ("pricing", 200), ("hinta", 150), ("käyttöohje", 80), ("login", 120), ("demo", 90),
    ("API", 40), ("api", 30), ("Zürich office", 10), ("東京 オフィス", 10), ("contact", 60),
    ("työpaikat", 30), ("shipping", 20), ("pizza 🍕", 3), ("100% free", 5), ("under_score", 4),
    ("a.b*c", 2),
)  # fmt: skip
ROOMS: tuple[tuple[str, int], ...] = (
    ("lobby", 300), ("support", 150), ("sales", 100), ("demo-room", 60), ("Kokoushuone 1", 30),
    ("Neuvotteluhuone Ä", 15), ("webinar", 40),
)  # fmt: skip

# Diurnal session share per UTC hour (Helsinki is UTC+2/+3: busy 06-18 UTC).
HOUR_WEIGHTS = (2, 1, 1, 1, 2, 4, 7, 10, 12, 12, 11, 11, 12, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2)


def draw_table(weighted: Sequence[tuple[T, int]], bits: int = TABLE_BITS) -> tuple[T, ...]:
    """Expand (value, weight) into 2^bits slots so a draw is one `getrandbits(bits)`."""
    size = 1 << bits
    total = sum(weight for _, weight in weighted)
    counts = [max(1, weight * size // total) for _, weight in weighted]
    counts[0] += size - sum(counts)
    return tuple(value for (value, _), count in zip(weighted, counts) for _ in range(count))


def _zipf_table(items: int, exponent: float) -> tuple[int, ...]:
    """Ranks 0..items-1 with Zipf weights (rank 0 the most popular)."""
    weights = [max(1, int(10_000 / (rank + 1) ** exponent)) for rank in range(items)]
    return draw_table(list(zip(range(items), weights)))


LOCATION_SLOTS = draw_table([((city, country), weight) for city, country, weight in LOCATIONS])
AGENT_SLOTS = draw_table([(agent[:4], agent[4]) for agent in AGENTS])
IP_ORGANIZATION_SLOTS = draw_table(IP_ORGANIZATIONS)
REFERRER_SLOTS = draw_table(REFERRERS)
SEARCH_TERM_SLOTS = draw_table(SEARCH_TERMS)
ROOM_SLOTS = draw_table(ROOMS)
UTC_HOUR_SLOTS = draw_table(list(zip(range(24), HOUR_WEIGHTS)))
URL_RANK_SLOTS = _zipf_table(400, 1.1)


def _pareto_counts(zero: float, exponent: float, most: int) -> tuple[int, ...]:
    """`zero` of the sessions list no page; P(count >= k | k >= 1) = k ** -exponent up to `most`."""
    tail = [1.0, *((k**-exponent) for k in range(1, most + 2))]
    weights = [(k, int(1e9 * (1 - zero) * (tail[k] - tail[k + 1]))) for k in range(1, most)]
    weights += [(most, int(1e9 * (1 - zero) * tail[most]))]
    return draw_table([(0, int(1e9 * zero)), *weights], COUNT_BITS)


def _lognormal_durations(mu: float, sigma: float, most: int) -> tuple[int, ...]:
    """Session seconds at 2^TABLE_BITS evenly spaced quantiles: median 90 s, tail to a day."""
    normal = NormalDist(mu, sigma)
    size = 1 << TABLE_BITS
    return tuple(min(most, int(math.exp(normal.inv_cdf((i + 0.5) / size)))) for i in range(size))


URL_COUNT_SLOTS = _pareto_counts(0.08, 1.2, 500)
DURATION_SLOTS = _lognormal_durations(4.5, 1.4, 86_400)

SLUGS = ("kevät", "news", "release", "päivitys")
