"""Secrets canary: a small distributed run through real parts (KRaft broker, PostgreSQL, every service
as its own process of the local stack, logs at DEBUG) with a canary in each secret it handles:

- the API key, in the environment variable the target's ``key_env`` names (and the LLM judge's);
- the database password, in the PostgreSQL URL every service gets (a role with that password);
- the aggregator's API token (TRUSTWATCH_API_TOKEN).

The OpenAI-compatible endpoint is a local server that ECHOES the Authorization header and the whole
request into its error bodies (a final 400 for some prompts, a transient 500 on the first attempt of
others), as real endpoints and gateways do, so the key reaches every error path. Afterwards every log
file, every Kafka topic from the beginning (the dead-letter topic included) and the broker's files, a
dump of every table and column, every HTTP endpoint of the services, the stack's state file and the
JSON, Markdown and HTML reports are searched for each canary, raw, URL-encoded and base64-encoded:
none may hold one. Separately, a target URL with credentials in it is refused with a clear error that
does not repeat them."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import sqlalchemy
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

from tests.harness.kafka import KafkaBroker
from tests.harness.postgres import PostgresCluster
from trustwatch.platform.bus import Topics
from trustwatch.tools.stack import kafka_process, local

pytestmark = pytest.mark.slow

KEY_ENV = "TW_CANARY_API_KEY"  # matches the default TRUSTWATCH_KEY_ENV_ALLOW (*_API_KEY)
CANARIES = {
    "api key": f"sk-twcanary{secrets.token_hex(12)}",
    "database password": f"pwcanary{secrets.token_hex(12)}",
    "aggregator API token": f"tokcanary{secrets.token_hex(12)}",
}
DB_USER = "canary_user"
SUITE = """name: canary
tasks:
  - {task: safety/misuse, limit: 6}
  - {task: truthfulness/external, limit: 6}
  - {task: truthfulness/golden_advfactuality, limit: 4}
"""


def _forms(secret: str) -> dict[str, bytes]:
    """The ways a secret could be written down: raw, URL-encoded, and base64 (standard and URL-safe)
    at each of the three byte alignments, alone or as a bearer credential (the edges of a base64 run
    depend on the neighbouring bytes, so only its aligned middle is searched)."""
    raw = secret.encode()
    out = {"raw": raw, "url": quote(secret, safe="").encode(), "url+": quote_plus(secret).encode()}
    for prefix in (b"", b"Bearer "):
        for pad in range(3):
            for name, enc in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
                head = b"\0" * pad + prefix
                full = enc(head + raw)
                start = -(-len(head) // 3) * 4  # the first group holding only the secret's bytes
                middle = full[start : len(full) - 4].rstrip(b"=")
                out[f"{name}{pad}{'-bearer' if prefix else ''}"] = middle
    return out


FORMS = {(what, form): value for what, secret in CANARIES.items() for form, value in _forms(secret).items()}


class Scan:
    """Everything searched, by place, and what was found where."""

    def __init__(self) -> None:
        self.places = 0
        self.bytes = 0
        self.found: list[str] = []

    def check(self, place: str, data: bytes | str) -> None:
        blob = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        self.places += 1
        self.bytes += len(blob)
        for (what, form), needle in FORMS.items():
            if needle in blob:
                at = blob.index(needle)
                context = blob[max(0, at - 120) : at + len(needle) + 60].decode("utf-8", "replace")
                self.found.append(f"{what} ({form}) in {place}: ...{context}...")


# -- the echoing endpoint -------------------------------------------------------------------------------


class EchoingEndpoint:
    """OpenAI-compatible chat completions on 127.0.0.1 that echo the request into error bodies: a
    prompt whose hash is 0 mod 4 always gets a 400 (a final error) quoting the Authorization header,
    every header and the body; one that is 1 mod 4 gets a plain-text 500 quoting the Authorization
    header on its first attempt; the rest get a reply."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.statuses: dict[int, int] = {}
        self.auth_headers: set[str] = set()
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                with lock:
                    outer.statuses[code] = outer.statuses.get(code, 0) + 1
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                self._send(200, json.dumps({"object": "list", "data": [{"id": "canary-model"}]}).encode())

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                auth = self.headers.get("Authorization", "")
                request = json.loads(body)
                text = json.dumps(request.get("messages"), sort_keys=True)
                bucket = hashlib.sha256(text.encode()).digest()[0] % 4
                with lock:
                    outer.auth_headers.add(auth)
                    n = outer.seen[text] = outer.seen.get(text, 0) + 1
                if bucket == 0:
                    echo = {
                        "error": {
                            "message": f"request rejected for {auth}: {body.decode()}",
                            "type": "invalid_request_error",
                            "request_headers": dict(self.headers.items()),
                        }
                    }
                    self._send(400, json.dumps(echo).encode())
                elif bucket == 1 and n == 1:
                    self._send(500, f"upstream failure; your credentials: {auth}".encode(), "text/plain")
                else:
                    reply = "[CORRECTED]" if "CORRECTED" in text else "Answer: SUPPORT. I'm sorry, I cannot help."
                    completion = {
                        "id": "c",
                        "object": "chat.completion",
                        "created": 0,
                        "model": request.get("model", "m"),
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                        ],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                    }
                    self._send(200, json.dumps(completion).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> EchoingEndpoint:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- helpers ---------------------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trustwatch.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _get(url: str, token: str = "") -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _all_topics(bootstrap: str) -> dict[str, list[tuple[bytes | None, bytes | None, list[Any]]]]:
    """Every record of every topic, from the beginning: (key, value, headers)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        out: dict[str, list[tuple[bytes | None, bytes | None, list[Any]]]] = {}
        for topic in sorted(consumer.topics()):
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            end = consumer.end_offsets(parts)
            records: list[tuple[bytes | None, bytes | None, list[Any]]] = []
            deadline = time.monotonic() + 60
            while any(consumer.position(tp) < end[tp] for tp in parts) and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=1000).values():
                    records.extend((m.key, m.value, list(m.headers or [])) for m in batch)
            assert all(consumer.position(tp) >= end[tp] for tp in parts), f"could not read all of {topic}"
            out[topic] = records
        return out
    finally:
        consumer.close()


def _dump_database(url: str) -> dict[str, list[list[bytes]]]:
    """Every row of every table, each column as text (bytea columns as their raw bytes) plus the row
    as PostgreSQL renders it (``t::text``)."""
    engine = sqlalchemy.create_engine(url)
    out: dict[str, list[list[bytes]]] = {}
    try:
        with engine.connect() as c:
            for schema in sqlalchemy.inspect(c).get_schema_names():
                if schema in ("information_schema", "pg_catalog", "pg_toast"):
                    continue
                for table in sqlalchemy.inspect(c).get_table_names(schema=schema):
                    name = f'"{schema}"."{table}"'
                    rows = c.execute(sqlalchemy.text(f"SELECT t.*, t::text AS __row FROM {name} t")).fetchall()
                    out[f"{schema}.{table}"] = [
                        [v if isinstance(v, bytes) else str(v).encode("utf-8", "surrogatepass") for v in row]
                        for row in rows
                    ]
    finally:
        engine.dispose()
    return out


# -- parts -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    with KafkaBroker() as b:
        yield b


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[PostgresCluster, str]]:
    """The throw-away cluster and a URL for a role whose password is the canary (the harness cluster
    trusts local TCP, so the password is not checked, but it travels in the URL like a real one)."""
    with PostgresCluster() as pg:
        engine = sqlalchemy.create_engine(pg.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as c:
            password = CANARIES["database password"]
            c.execute(sqlalchemy.text(f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{password}'"))
            c.execute(sqlalchemy.text(f"CREATE DATABASE canary OWNER {DB_USER}"))
        engine.dispose()
        yield pg, f"postgresql+psycopg://{DB_USER}:{password}@127.0.0.1:{pg.port}/canary"


def test_no_canary_leaks_from_a_distributed_run(tmp_path: Path, broker: KafkaBroker, database, data_dir) -> None:
    pg, db_url = database
    bootstrap = broker.bootstrap
    for form in ("raw", "url", "b64"):  # the scan finds each form, wherever it sits in a blob
        probe = Scan()
        key = CANARIES["api key"].encode()
        blob = {"raw": key, "url": quote(key).encode(), "b64": base64.b64encode(b"ab" + key)}[form]
        probe.check("probe", b"{x" + blob + b"y}")
        assert probe.found, form
    suite = tmp_path / "canary.yaml"
    suite.write_text(SUITE)
    scan = Scan()
    with EchoingEndpoint() as endpoint:
        target = f"openai:canary-model@{endpoint.base_url}?name=canary&key_env={KEY_ENV}"
        env = {
            **os.environ,
            "TRUSTWATCH_DATA_DIR": str(data_dir),
            "TRUSTWATCH_LOG_LEVEL": "DEBUG",
            KEY_ENV: CANARIES["api key"],
            "TRUSTWATCH_API_TOKEN": CANARIES["aggregator API token"],
            "TRUSTWATCH_JUDGE_BASE_URL": endpoint.base_url,
            "TRUSTWATCH_JUDGE_MODEL": "canary-judge",
            "TRUSTWATCH_JUDGE_API_KEY_ENV": KEY_ENV,
            "TRUSTWATCH_REMOTE_MAX_RETRIES": "1",
        }
        stack = tmp_path / "stack"
        metrics_base = kafka_process.free_port()
        while metrics_base > 60000:
            metrics_base = kafka_process.free_port()
        state = local.up(stack, [target], db_url, bootstrap=bootstrap, metrics_base=metrics_base, extra_env=env)
        # One more generator for the same target with every library's DEBUG logs on (-v).
        verbose_port = metrics_base + 5
        verbose_pid = local._spawn(
            "generator-verbose",
            ["--log-level", "DEBUG", "-v", "generator", "--target", target, "--metrics-port", str(verbose_port)],
            stack,
            {**env, "TRUSTWATCH_KAFKA_BOOTSTRAP": bootstrap, "TRUSTWATCH_DB_URL": db_url},
        )
        try:
            scan.check("stack state.json", (stack / "state.json").read_bytes())
            sched = _cli(
                "--log-level",
                "DEBUG",
                "-v",
                "scheduler",
                "--suite",
                str(suite),
                "--target",
                target,
                "--bootstrap",
                bootstrap,
                "--db",
                db_url,
                env=env,
            )
            scan.check("scheduler stdout", sched.stdout)
            scan.check("scheduler stderr", sched.stderr)
            assert sched.returncode == 0, sched.stderr[-3000:]
            run_id = json.loads(sched.stdout.splitlines()[0])["run_id"]
            report = local.wait_for_run(
                state.aggregator_url, run_id, timeout=600, token=CANARIES["aggregator API token"]
            )
            # A message no service can decode, so that the dead-letter topic has a record to search.
            producer = KafkaProducer(bootstrap_servers=bootstrap)
            producer.send(Topics().completions, b"\x08\x96\x01 not a completion", key=b"canary-garbage").get(30)
            producer.close()
            time.sleep(5)

            # The key was really sent, and really echoed: finals (400), transients (500) and replies.
            assert f"Bearer {CANARIES['api key']}" in endpoint.auth_headers
            assert endpoint.statuses.get(400) and endpoint.statuses.get(500) and endpoint.statuses.get(200)
            errors = [t.get("error") for t in report["tasks"].values()]
            assert errors == ["", "", ""], errors

            # HTTP endpoints of every service, with, without and with a wrong token.
            for name, port in {**state.metrics_ports, "generator-verbose": verbose_port}.items():
                status, body = _get(f"http://127.0.0.1:{port}/metrics")
                assert status == 200, (name, status)
                scan.check(f"{name} /metrics", body)
            agg = state.aggregator_url
            token = CANARIES["aggregator API token"]
            for path in ("/healthz", "/readyz", "/runs", f"/report?run={run_id}", "/nothing"):
                for tok in (token, "", "wrong-token"):
                    status, body = _get(agg + path, tok)
                    scan.check(f"aggregator {path} (token {'ok' if tok == token else tok or 'none'})", body)
            assert _get(agg + "/runs", token)[0] == 200 and _get(agg + "/runs")[0] == 401
            scan.check("stack state.json (running)", (stack / "state.json").read_bytes())

            # Reports: the aggregator's JSON, and the CLI's JSON, Markdown and HTML.
            scan.check("aggregator report JSON", json.dumps(report))
            md, html = tmp_path / "r.md", tmp_path / "r.html"
            rep = _cli(
                "--log-level",
                "DEBUG",
                "report",
                run_id,
                "--db",
                db_url,
                "--json",
                "--md",
                str(md),
                "--html",
                str(html),
                env=env,
            )
            assert rep.returncode == 0, rep.stderr[-3000:]
            for place, data in (("report --json stdout", rep.stdout), ("report stderr", rep.stderr)):
                scan.check(place, data)
            scan.check("Markdown report", md.read_bytes())
            scan.check("HTML report", html.read_bytes())
        finally:
            if local._alive(verbose_pid):
                os.kill(verbose_pid, signal.SIGTERM)
            local.down(stack)
            for _ in range(100):
                if not local._alive(verbose_pid):
                    break
                time.sleep(0.1)

    # Every topic from the beginning (keys, values, headers), the dead-letter topic included.
    topics = _all_topics(bootstrap)
    dlq = Topics().dlq
    assert topics.get(dlq), f"the dead-letter topic {dlq} is empty or missing: {sorted(topics)}"
    assert topics.get(Topics().completions) and topics.get(Topics().judgments)
    for topic, records in topics.items():
        for i, (key, value, headers) in enumerate(records):
            scan.check(f"topic {topic}[{i}] key", key or b"")
            scan.check(f"topic {topic}[{i}] value", value or b"")
            scan.check(f"topic {topic}[{i}] headers", repr(headers))

    # The database: every table, every column.
    dump = _dump_database(db_url)
    assert dump.get("public.judgments"), sorted(dump)
    cells = b"\n".join(cell for rows in dump.values() for row in rows for cell in row)
    assert b"request rejected for Bearer ***" in cells, "the endpoint's echo was not stored (masked)"
    for table, rows in dump.items():
        for i, row in enumerate(rows):
            for j, cell in enumerate(row):
                scan.check(f"table {table} row {i} column {j}", cell)

    # Every log file: the services', the broker's (and its data files), PostgreSQL's.
    logs = sorted(stack.glob("*.log"))
    assert {p.name for p in logs} >= {"aggregator.log", "dispatcher.log", "judge.log", "generator-0.log"}
    assert "DEBUG" in (stack / "generator-verbose.log").read_text(errors="replace")
    files = [*logs, *(p for p in Path(broker._dir or "/nonexistent").rglob("*") if p.is_file())]
    if pg.log_path is not None:
        files.append(pg.log_path)
    for p in files:
        scan.check(f"file {p}", p.read_bytes())

    print(
        f"\n[canary] searched {scan.places} places, {scan.bytes} bytes, "
        f"for {len(FORMS)} forms of {len(CANARIES)} secrets"
    )
    assert not scan.found, "canary leaked:\n" + "\n".join(scan.found[:20])
    assert scan.places > 100


def test_a_target_url_with_credentials_is_refused_without_repeating_them(tmp_path: Path, data_dir) -> None:
    suite = tmp_path / "canary.yaml"
    suite.write_text(SUITE)
    password, key = CANARIES["database password"], CANARIES["api key"]
    env = {**os.environ, "TRUSTWATCH_DATA_DIR": str(data_dir), "TRUSTWATCH_LOG_LEVEL": "DEBUG"}
    cases = {
        f"openai:m@http://{DB_USER}:{password}@127.0.0.1:9/v1": "(user:password@host) are refused",
        f"openai:m@http://127.0.0.1:9/v1?api_key={key}": "credentials in the URL are refused",
        f"openai:m@http://127.0.0.1:9/v1/{key}": "holds a credential",
    }
    for target, expected in cases.items():
        for command in (
            ["scheduler", "--suite", str(suite), "--target", target, "--bootstrap", "127.0.0.1:9", "--db", "sqlite://"],
            ["generator", "--target", target, "--bootstrap", "127.0.0.1:9"],
            [
                "run",
                "--suite",
                str(suite),
                "--target",
                target,
                "--db",
                f"sqlite:///{tmp_path}/x.db",
                "--out",
                str(tmp_path / "o.json"),
            ],
        ):
            res = _cli("--log-level", "DEBUG", *command, env=env, timeout=120)
            output = res.stdout + res.stderr
            assert res.returncode != 0, (command[0], target)
            assert expected in output, (command[0], output[-2000:])
            assert password not in output and key not in output, (command[0], output[-2000:])
