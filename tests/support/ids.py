"""Organization ids the tests share."""

from __future__ import annotations

from proxyctl.ingest.generator import DEMO_ORGANIZATION

# The golden files and the demo data are written for this organization.
ORG = DEMO_ORGANIZATION
OTHER_ORG = "0b5c1e3e-8a7e-4c39-9a2a-7a1f9f3c2d10"
# Well-formed, but never registered anywhere.
UNKNOWN_ORG = "9d4b7e2a-1111-4c39-9a2a-7a1f9f3c2d10"
