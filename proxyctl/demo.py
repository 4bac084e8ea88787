"""`make demo`: sample data on the embedded engine, a demo organization and key, then serve.

Runs the real CLI step by step, so the demo exercises exactly what an operator would type.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from proxyctl.ingest.generator import DEMO_ORGANIZATION

SEED = 7
ORGS = 5
SEED_QUERY = {
    "interval": {
        "start": "2019-01-01T00:00:00+02:00",
        "end": "2019-01-02T00:00:00+02:00",
        "time_zone": "Europe/Helsinki",
    },
    "granularity": "day",
    "aggregations": [{"type": "hyperUnique", "fields": ["visitor_id"]}],
    "filters": [
        {"type": "selector", "dimension": "city", "value": "Helsinki"},
        {"type": "selector", "dimension": "country", "value": "FI"},
    ],
}

# The console's form starts on the seed example's week (docs/console.md); the fragment stays in the browser.
CONSOLE_FRAGMENT = f"org={DEMO_ORGANIZATION}&start=2019-01-01&end=2019-01-08&tz=Europe/Helsinki"


def _cli(*args: str) -> str:
    executable = shutil.which("reporting-proxy", path=str(Path(sys.executable).parent))
    done = subprocess.run([executable or "reporting-proxy", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"reporting-proxy {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def _step(title: str, *args: str) -> str:
    started = time.monotonic()
    print(f"==> {title}", flush=True)
    output = _cli(*args)
    print(f"    done in {time.monotonic() - started:.1f} s", flush=True)
    return output


def main() -> None:
    started = time.monotonic()
    data_dir = Path(os.environ.get("PROXY_DATA_DIR", "var/demo"))
    os.environ["PROXY_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("PROXY_BACKEND", "embedded")
    sessions = os.environ.get("DEMO_SESSIONS", "300000")
    port = os.environ.get("DEMO_PORT", "8080")
    sample = data_dir / "sessions.ndjson"
    data_dir.mkdir(parents=True, exist_ok=True)
    _step(
        f"generating {sessions} sessions",
        "gen",
        str(sample),
        "--sessions",
        sessions,
        "--orgs",
        str(ORGS),
        "--seed",
        str(SEED),
    )
    _step("loading them into the embedded engine", "load", str(sample))
    if DEMO_ORGANIZATION not in _cli("orgs", "list"):
        _step("registering the demo organization", "orgs", "add", DEMO_ORGANIZATION, "--name", "Demo")
    key = (
        _step("creating an API key", "tokens", "create", "--org", DEMO_ORGANIZATION, "--name", "demo")
        .strip()
        .splitlines()[-1]
    )
    print(
        f"\nReady in {time.monotonic() - started:.0f} s. "
        "Try the seed example (unique visitors from Helsinki on 1.1.2019):\n"
    )
    print(
        f"curl -s -X POST http://127.0.0.1:{port}/api/reporting/v1/orgs/{DEMO_ORGANIZATION}/visitor_sessions \\\n"
        f"  -H 'Authorization: Token {key}' -H 'Content-Type: application/json' \\\n"
        f"  -d '{json.dumps(SEED_QUERY)}'\n",
        flush=True,
    )
    print(
        "Or open the query console and paste the key there (it never goes into the URL):\n"
        f"  http://127.0.0.1:{port}/console#{CONSOLE_FRAGMENT}\n  key: {key}\n",
        flush=True,
    )
    os.execv(sys.executable, [sys.executable, "-m", "proxyctl.cli", "serve", "--port", port])


if __name__ == "__main__":
    main()
