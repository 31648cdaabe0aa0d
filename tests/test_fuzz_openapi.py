"""The live OpenAPI schema against the live service: schemathesis with every check and stateful links.

A real daphne serves the test database connected as the plain `tenex_app` role (row-level security
applies, as in production), with a workspace, a personal key, a thread, a document and an agent
seeded. schemathesis reads /api/v1/schema/ from it and runs its coverage, fuzzing and stateful phases
with all checks (no 5xx, statuses, content types, headers and bodies as documented, valid requests
accepted, invalid ones refused, method and auth checks, use after free, resource availability).
The test prints the number of cases and the statuses answered; it needs at least 1,000 cases and
no failure or error of any kind. tests/fuzz_hooks.py says which values get their one valid form.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from tests.processes import ROOT, daphne_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MIN_CASES = 1_000
# Fixed so that CI runs the same cases every time; TENEX_FUZZ_SEED explores others.
SEED = os.environ.get("TENEX_FUZZ_SEED", "20261206")
CONFIG = """
# Every run starts from nothing (no state kept between runs, nothing written to the repository).
[cache]
enabled = false

# No NUL character anywhere in generated values: the schema's patterns say so for every text field,
# but OpenAPI 3.0 has no way to say it of the keys inside free-form objects (`metadata`).
[generation]
allow-x00 = false

# Error feedback reads 4xx bodies to learn field names; it takes our error envelope's `error` key for
# a body field and sends it as a "valid" one.
[phases.fuzzing.error-feedback]
enabled = false
"""


def seed(client) -> None:
    thread = client.post("/api/v1/chat/threads", {"title": "Fuzzed"}, format="json").json()
    sent = client.post(f"/api/v1/chat/threads/{thread['id']}/messages", {"content": "Hello"}, format="json")
    assert sent.status_code == 202, sent.content
    document = client.post("/api/v1/knowledge/documents", {"title": "Pricing", "body": "Pro is 49."}, format="json")
    assert document.status_code == 201, document.content
    agent = client.post("/api/v1/agents", {"name": "Writer", "instructions": "Write."}, format="json")
    assert agent.status_code == 201, agent.content


@pytest.mark.timeout(900)  # about 3 minutes on an idle machine; room for a shared one
def test_the_openapi_schema_holds_against_the_live_service(alice, tmp_path):
    call_command("setup_database_roles", "--role", "tenex_app", stdout=StringIO())
    seed(alice.client)
    db = connection.settings_dict
    as_app = f"postgres://tenex_app@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    config, report, statuses = tmp_path / "schemathesis.toml", tmp_path / "report.json", tmp_path / "statuses.json"
    config.write_text(CONFIG)
    with daphne_process(
        DATABASE_URL=as_app,
        TENEX_RATE_LIMIT="1000000/min",
        TENEX_ANON_RATE_LIMIT="1000000/min",
        TENEX_LOCAL_TOKEN_DELAY_MS="0",
        TENEX_DB_POOL_TIMEOUT="30",
    ) as (base, _process):
        done = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")), "--no-color", "--config-file", str(config),
                "run", f"{base}/api/v1/schema/", "--url", base,
                "--header", f"Authorization: Bearer {alice.key}",
                "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
                "--max-examples", "10", "--workers", "1", "--seed", SEED,
                # Hypothesis's own health check on how fast it draws values, not a check of the API.
                "--suppress-health-check", "too_slow",
                "--request-timeout", "60", "--report", "json", "--report-json-path", str(report),
            ],
            cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
            env={
                **os.environ, "PYTHONPATH": str(ROOT), "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
                "TENEX_FUZZ_USER_ID": alice.id, "TENEX_FUZZ_STATUSES": str(statuses),
            },
        )
    summary = json.loads(report.read_text())
    answered = json.loads(statuses.read_text())
    cases = summary["test_cases"]["generated"]
    print(
        f"\nschemathesis: {cases} cases, {summary['test_cases']['with_failures']} with failures, "
        f"{sum(error['count'] for error in summary['errors'])} errors, seed {summary['seed']}, "
        f"{summary['running_time']:.0f} s; statuses {answered}"
    )
    output = done.stdout[-6000:]
    assert summary["failures"] == [] and summary["errors"] == [], output
    assert done.returncode == 0, output
    assert cases >= MIN_CASES, output
    assert not any(int(code) >= 500 for code in answered), answered
