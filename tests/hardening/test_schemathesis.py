"""Schemathesis against the served embedded service with its own published document: every check,
positive and negative data, bounded and repeatable (issue 14).

The only failures accepted are schema-valid requests refused for a documented cross-field rule
(the hooks in tests/support/schemathesis_hooks.py drop those and record them); at least half of
the positive POSTs must reach the engine and answer 200.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.served import BIN, Service

MAX_EXAMPLES = 300  # per operation and phase
SEED = 14
TIME_LIMIT_SECS = 240
ROOT = Path(__file__).parents[2]
# Answers a check may take as the documented refusal: 413 (the body cap, beyond JSON Schema) for
# any body; 405 for an OPTIONS that is no CORS preflight (a preflight header missing).
CONFIG = """
[parameters]
"path.organization_id" = "{organization}"

[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 413, 415]

[checks.positive_data_acceptance]
expected-statuses = [200, 204, 304, 401, 403, 404, 413]

[checks.missing_required_header]
expected-statuses = [400, 401, 403, 405, 406, 415, 422]
"""


def _run(service: Service, workdir: Path) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    organization = next(iter(service.tokens))
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG.format(organization=organization))
    record = workdir / "record.jsonl"
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.support.schemathesis_hooks",
        "SCHEMATHESIS_RECORD": str(record),
        "PYTHONPATH": str(ROOT),
    }
    command = [
        str(BIN / "st"),
        *("--config-file", str(config)),
        "run",
        f"{service.base_url}/openapi.json",
        *("-H", f"Authorization: Token {service.tokens[organization]}"),
        *("--checks", "all", "--mode", "all", "--continue-on-failure", "--workers", "2"),
        *("--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--generation-database", "none"),
        *("--request-timeout", "30"),
    ]
    done = subprocess.run(
        command, env=env, cwd=workdir, capture_output=True, text=True, timeout=TIME_LIMIT_SECS
    )
    lines = record.read_text().splitlines() if record.exists() else []
    return done, [json.loads(line) for line in lines]


def _summary(records: list[dict[str, Any]]) -> tuple[int, int, Counter[str]]:
    posts = [r for r in records if r.get("mode") == "positive" and r.get("method") == "POST"]
    accepted = Counter(path for r in records if r.get("accepted") for path in r["field_paths"])
    return len(posts), sum(r["status"] == 200 for r in posts), accepted


def test_schemathesis_finds_nothing_beyond_the_documented_rules(
    open_service: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done, records = _run(open_service, tmp_path)
    posts, answered, accepted = _summary(records)
    kept = [r for r in records if "failure" in r and not r["accepted"]]
    with capsys.disabled():
        print(
            f"\nschemathesis: {sum('status' in r for r in records)} calls; positive POSTs {posts}, "
            f"answered 200 by the engine {answered}; refused for documented rules: {dict(accepted)}"
        )
    assert done.returncode == 0 and not kept, f"{kept[:10]}\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
    # Hypothesis stops an operation early once it finds nothing new: fewer than the maximum.
    assert posts >= MAX_EXAMPLES // 3
    assert answered * 2 >= posts, f"only {answered} of {posts} positive POSTs reached the engine"
