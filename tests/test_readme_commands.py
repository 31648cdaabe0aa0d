"""The README's commands, pasted as written, in the order shown, after `scripts/serve`.

Every ```sh block of the README is run: the first (`scripts/serve`) as a real server over a fresh
data directory, the rest in one bash session (variables carry from block to block, as in a
terminal), `createsuperuser` under a pseudo-terminal because it asks for a password. The only
change to the text is the port: the server listens on a free one instead of 8000. Once on the
embedded default, once with DATABASE_URL and REDIS_URL exported as the production notes say.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.helpers import free_port
from tests.test_embedded_default import ROOT

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
DEFAULT_BASE = "http://127.0.0.1:8000"
SUPERUSER_PASSWORD = "support-desk-password-42"
MARKER = "::readme-block::"


def sh_blocks() -> list[str]:
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)]


def test_the_readme_shows_the_blocks_this_test_runs():
    blocks = sh_blocks()
    assert blocks[0] == "scripts/serve" and blocks[1] == "scripts/test"
    assert "createsuperuser --email" in blocks[-1]
    assert "DJANGO_SECRET_KEY" not in "".join(blocks)  # nothing to export first


def clean_env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "DJANGO_DEBUG", "TENEX_TESTING"}}
    env.update(TENEX_DATA_DIR=str(data), TENEX_LOCAL_TOKEN_DELAY_MS="2", **extra)
    return env


def start_serve(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`scripts/serve` as the README runs it; returns once it printed its banner."""
    process = subprocess.Popen(
        ["bash", "scripts/serve"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    output = ""
    deadline = time.monotonic() + 180
    while "Demo API key:" not in output:
        line = process.stdout.readline()
        if (not line and process.poll() is not None) or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGTERM)
            raise AssertionError(f"scripts/serve did not start:\n{output}")
        output += line
    return process, output


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(20)


def run_blocks(blocks: list[str], env: dict[str, str], base: str) -> list[str]:
    """The blocks in one bash session (stopping at the first failing command); each block's output."""
    script = "\n".join(f"echo '{MARKER}'\n{block.replace(DEFAULT_BASE, base)}" for block in blocks)
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout.split(MARKER + "\n")[1:]


def run_in_terminal(command: str, env: dict[str, str], answers: dict[str, str]) -> str:
    """`command` with a terminal for stdin/stdout, answering each prompt it prints."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        ["bash", "-c", command], cwd=ROOT, env=env, stdin=follower, stdout=follower, stderr=follower,
        start_new_session=True,
    )
    os.close(follower)
    output, answered = "", dict.fromkeys(answers, 0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 4096).decode(errors="replace")
            except OSError:  # the command ended and closed the terminal
                break
            if not chunk:
                break
            output += chunk
            for prompt, answer in answers.items():
                if output.count(prompt) > answered[prompt] and output.rstrip().endswith(prompt.rstrip()):
                    os.write(leader, answer.encode() + b"\n")
                    answered[prompt] += 1
        elif process.poll() is not None:
            break
    status = process.wait(30)
    os.close(leader)
    assert status == 0, output
    return output


def check_outputs(outputs: list[str], base: str) -> None:
    try_it, mcp, keys = outputs[:3]
    # Try it: who am I, a grounded streamed reply, the resumed stream, and the 204 of the delete.
    assert '"slug":"demo"' in try_it.replace(" ", ""), try_it[:2000]
    assert "event: tool_call" in try_it and "event: done" in try_it, try_it[-3000:]
    assert "49 dollars per seat" in try_it
    assert "id: 4\n" in try_it  # the resume from Last-Event-ID: 3 starts at event 4
    assert try_it.rstrip().endswith("204"), try_it[-500:]
    # MCP: the HTTP call and the stdio server both answer the tools/call.
    assert mcp.count('"isError":false') + mcp.count('"isError": false') == 2, mcp[-3000:]
    # Keys: a personal key, a service key listed, then revoked by the key itself.
    lines = keys.strip().splitlines()
    assert re.fullmatch(r"tnx_\w+", lines[1]), keys  # create_api_key prints the personal key
    assert "reports" in keys and re.search(r"revoked tnx_\w{8}$", lines[-1]), keys


def check_superuser(env: dict[str, str], block: str, base: str) -> None:
    output = run_in_terminal(block, env, {"Password:": SUPERUSER_PASSWORD, "Password (again):": SUPERUSER_PASSWORD})
    assert "Superuser created successfully." in output, output
    with httpx.Client(base_url=base) as client:
        page = client.get("/admin/login/")
        token = client.cookies["csrftoken"]
        signed_in = client.post(
            "/admin/login/?next=/admin/",
            data={"username": "support@tenex.test", "password": SUPERUSER_PASSWORD, "csrfmiddlewaretoken": token},
            follow_redirects=True,
        )
    assert page.status_code == 200 and signed_in.status_code == 200
    assert "Site administration" in signed_in.text and "support@tenex.test" in signed_in.text


def run_readme(env: dict[str, str]) -> None:
    blocks = sh_blocks()
    port = free_port()
    env = {**env, "PORT": str(port)}
    base = f"http://127.0.0.1:{port}"
    server, banner = start_serve(env)
    try:
        assert f"tenex chat is running at {base}" in banner
        outputs = run_blocks(blocks[2:-1], env, base)
        check_outputs(outputs, base)
        check_superuser(env, blocks[-1], base)
    finally:
        stop(server)


def test_readme_commands_work_as_written_on_the_embedded_default(tmp_path):
    run_readme(clean_env(tmp_path))
    assert (tmp_path / "tenex.sqlite3").exists() and (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


@pytest.fixture
def fresh_postgres_database():
    """A new database owned by the suite's owner role, dropped afterwards."""
    url = os.environ["DATABASE_URL"]
    name = f"tenex_readme_{uuid.uuid4().hex[:10]}"
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_readme_commands_work_as_written_with_postgresql_and_redis(tmp_path, fresh_postgres_database):
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    run_readme(clean_env(tmp_path, DATABASE_URL=fresh_postgres_database, REDIS_URL=redis_url))
    assert not (tmp_path / "tenex.sqlite3").exists()
