"""Servers under test: start them once, reuse them, read their logs, counters and deviations.

A `ServerPool` belongs to one implementation (stdlib, aiohttp or uvloop) and starts a subprocess
per distinct configuration the first time a test asks for it (`pool.get(keepalive_max=1)`), then
hands the same process to every later test; the pool is torn down at the end of the module or
when pytest moves on to the next implementation. Every server runs with `--log-connections` and
its stderr in a file, so a test can check which requests were dispatched on a connection ("`/b`
never processed").
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from servers.launch import ServerProcess, ServerStartError
from servers.options import (
    EXTERNAL_SERVERS,
    REFERENCE_SERVERS,
    OptionsError,
    ServerName,
    ServerOptions,
    TlsVersion,
)
from tests.wire_client import RawConnection, Response

REPO = Path(__file__).resolve().parent.parent
# `make test` runs ours; `make conformance-report` sets KAB_TEST_SERVERS (e.g. `nginx,node`) to run
# the same cases against other servers as a report (benchmarks/conformance).
SERVERS_ENV = "KAB_TEST_SERVERS"
SERVER_NAMES = tuple(
    ServerName(name.strip()).value
    for name in os.environ.get(SERVERS_ENV, ",".join(REFERENCE_SERVERS)).split(",")
    if name.strip()
)
THREAD_SERVERS = frozenset({"stdlib"})
LOG_DELAY_S = {"nginx": 5.5}

# The suite configuration from the spec: T = 1 s, N = 3, H = 1 s.
SUITE_T = 1.0
SUITE_N = 3
SUITE_H = 1.0

# Every conformance case of docs/keepalive-spec.md, in spec order (tests/test_suite_meta.py
# checks the two agree).
CASE_IDS = (
    *(f"KA-0{i}" for i in range(1, 8)),
    *(f"MAX-0{i}" for i in range(1, 5)),
    *(f"IDLE-0{i}" for i in range(1, 7)),
    *(f"PIPE-0{i}" for i in range(1, 5)),
    *(f"BODY-0{i}" for i in range(1, 5)),
    *(f"ERR-0{i}" for i in range(1, 9)),
    *(f"ROB-0{i}" for i in range(1, 4)),
    *(f"SLOT-0{i}" for i in range(1, 5)),
)
_CASE_IN_TEST_NAME = re.compile(r"^test_(ka|max|idle|pipe|body|err|rob|slot)(\d\d)(?:_|$)")


def case_id_of(test_name: str) -> str | None:
    """`test_ka01_two_requests` -> `KA-01`; None for tests that are not conformance cases."""
    match = _CASE_IN_TEST_NAME.match(test_name)
    return f"{match[1].upper()}-{match[2]}" if match else None


def close_limit_s(name: str, timeout_s: float = SUITE_T) -> float:
    """Latest acceptable close after a timeout (spec: T + 0.5 s; thread servers T + 1 s)."""
    return timeout_s + (1.0 if name in THREAD_SERVERS else 0.5)


# A close measured by the client can look a little early: the server's timer started when the
# last byte left it, slightly before the client saw that byte.
EARLY_SLACK_S = 0.05


def module_path(name: str) -> Path:
    return REPO / "servers" / f"{name}_server.py"


def load_deviations(name: str) -> dict[str, str] | None:
    """The module-level `DEVIATIONS` of servers/<name>_server.py; None when it declares none.

    Read from the source (no import: the test process should not load uvloop or run a half-written
    module); a value that is not a literal falls back to importing it in a subprocess.
    """
    path = module_path(name)
    if not path.is_file():
        return None
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except SyntaxError:
        return None
    value: ast.expr | None = None
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "DEVIATIONS" for t in node.targets)
            or (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id == "DEVIATIONS"
            )
        ):
            value = node.value
    if value is None:
        return None
    try:
        return dict(ast.literal_eval(value))
    except ValueError:
        return _import_deviations(name)


def _import_deviations(name: str) -> dict[str, str] | None:
    code = (
        "import importlib, json; "
        f"print(json.dumps(importlib.import_module('servers.{name}_server').DEVIATIONS))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    return json.loads(done.stdout) if done.returncode == 0 else None


@dataclass(frozen=True)
class LogEntry:
    """One `--log-connections` line."""

    client_port: int
    connection_id: int
    request_number: int
    method: str
    target: str
    connection: str


_LOG_LINE = re.compile(
    r"^port=(\d+) conn=(\d+) req=(\d+) (\S+) (\S+) connection=(.*)$", re.MULTILINE
)


class Server:
    """One running server process of the pool, with its options, READY info and stderr log."""

    def __init__(self, process: ServerProcess, log_path: Path, log_file: IO[bytes]) -> None:
        assert process.ready is not None
        self.process = process
        self.options = process.options
        self.ready = process.ready
        self.name = process.options.name.value
        self.log_path = log_path
        self._log_file = log_file

    @property
    def host(self) -> str:
        return self.ready.host

    @property
    def port(self) -> int:
        return self.ready.port

    @property
    def ca_path(self) -> Path | None:
        return self.ready.ca_path

    def close_limit_s(self, timeout_s: float | None = None) -> float:
        return close_limit_s(
            self.name, self.options.keepalive_timeout_s if timeout_s is None else timeout_s
        )

    def connect(self, **kwargs: Any) -> RawConnection:
        return RawConnection.open(self.host, self.port, ca_path=self.ca_path, **kwargs)

    def counters(self) -> dict[str, Any]:
        return self.process.counters()

    def stderr_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stderr_tail(self, lines: int = 15) -> str:
        return "\n".join(self.stderr_text().splitlines()[-lines:])

    def log_entries(self) -> list[LogEntry]:
        return [
            LogEntry(int(m[1]), int(m[2]), int(m[3]), m[4], m[5], m[6])
            for m in _LOG_LINE.finditer(self.stderr_text())
        ]

    def dispatched(self, connection_id: int, *, settle_s: float = 0.3) -> list[str]:
        """Targets dispatched on one connection, in order, after letting the server settle.

        Call it once the connection has ended, to prove that a request was *never* processed.
        nginx logs a request when it frees it, after a lingering close up to its
        lingering_timeout (5 s) later: its log needs that long to be complete.
        """
        time.sleep(max(settle_s, LOG_DELAY_S.get(self.name, 0.0)))
        entries = [e for e in self.log_entries() if e.connection_id == connection_id]
        if not entries:
            pytest.fail(
                f"{self.name} wrote no --log-connections line for connection {connection_id}; "
                "cannot tell which requests it processed"
            )
        return [e.target for e in sorted(entries, key=lambda e: e.request_number)]

    def wait_idle(self, timeout_s: float = 3.0) -> dict[str, Any]:
        """Counters once no connection is open any more (closes are counted asynchronously)."""
        deadline = time.monotonic() + timeout_s
        while True:
            snap = self.counters()
            if snap["connections_open"] == 0 or time.monotonic() > deadline:
                return snap
            time.sleep(0.05)

    def stop(self) -> int | None:
        try:
            return self.process.stop()
        finally:
            self._log_file.close()


class ServerPool:
    """The processes of one implementation, one per configuration, started on first use."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self._servers: dict[tuple[Any, ...], Server] = {}
        self._failures: dict[tuple[Any, ...], str] = {}
        self._started = 0

    def get(
        self,
        *,
        keepalive_timeout_s: float = SUITE_T,
        keepalive_max: int = SUITE_N,
        header_timeout_s: float | None = SUITE_H,
        tls: bool = False,
        tls_version: TlsVersion | None = None,
        tag: str = "",
        max_connections: int = 0,
        reclaim_idle: bool = False,
    ) -> Server:
        """The server for this configuration (`tag` separates otherwise equal configurations)."""
        key = (keepalive_timeout_s, keepalive_max, header_timeout_s, tls, tls_version, tag,
               max_connections, reclaim_idle)  # fmt: skip
        if key in self._failures:
            pytest.fail(self._failures[key], pytrace=False)
        server = self._servers.get(key)
        if server is not None:
            if server.process.alive():
                return server
            del self._servers[key]
            code = server.stop()
            message = (
                f"{self.name} server ({self._describe(key)}) died during an earlier test "
                f"(exit status {code}); stderr:\n{server.stderr_tail()}"
            )
            pytest.fail(message, pytrace=False)
        server = self._start(key)
        self._servers[key] = server
        return server

    @staticmethod
    def _describe(key: tuple[Any, ...]) -> str:
        t, n, h, tls, version, tag, slots, reclaim = key
        tls_text = f"{tls}" + (f" {version}" if version else "")
        text = f"T={t:g} N={n} H={h} tls={tls_text}" + (f" {tag}" if tag else "")
        if slots:
            text += f" max-connections={slots}" + (" reclaim-idle" if reclaim else "")
        return text

    def _start(self, key: tuple[Any, ...]) -> Server:
        t, n, h, tls, tls_version, _, slots, reclaim = key
        if not module_path(self.name).is_file():
            message = f"servers/{self.name}_server.py does not exist (yet): nothing to test"
            self._failures[key] = message
            pytest.fail(message, pytrace=False)
        try:
            options = ServerOptions(
                name=ServerName(self.name),
                keepalive_timeout_s=t,
                keepalive_max=n,
                header_timeout_s=h,
                tls=tls,
                tls_version=tls_version,
                log_connections=True,
                max_connections=slots,
                reclaim_idle=reclaim,
            )
        except OptionsError as exc:  # nginx and Node have no --max-connections
            self._failures[key] = f"{self.name}: {exc}"
            pytest.fail(self._failures[key], pytrace=False)
        self._started += 1
        log_path = self.workdir / f"{self.name}-{self._started}.stderr"
        log_file = log_path.open("wb")
        process = ServerProcess(options, stderr=log_file)
        try:
            process.start()
        except ServerStartError as exc:
            process.stop()
            log_file.close()
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            message = f"{exc} ({self._describe(key)}); stderr:\n{tail}"
            self._failures[key] = message
            pytest.fail(message, pytrace=False)
        return Server(process, log_path, log_file)

    def close(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()


# Servers nobody here wrote (nginx, Node) format `Keep-Alive` their own way (nginx never sends
# `max=`, Node a fixed one): for them the report records the header it saw instead of failing,
# so the rest of each case is still checked. tests/conformance_outcomes.py collects the notes.
HEADER_FINDINGS: list[str] = []


def expect_keep(resp: Response, server: Server, remaining: int | None) -> None:
    """Rule 2: `Connection: keep-alive` and `Keep-Alive: timeout=T, max=R` (no max when N=0)."""
    expected = f"timeout={server.options.keepalive_timeout_s:g}"
    if remaining is not None:
        expected += f", max={remaining}"
    assert resp.connection_tokens == {"keep-alive"}, f"Connection: {resp.values('Connection')}"
    if server.options.name in EXTERNAL_SERVERS and resp.header("Keep-Alive") != expected:
        HEADER_FINDINGS.append(", ".join(resp.values("Keep-Alive")) or "(none)")
        return
    assert resp.header("Keep-Alive") == expected, f"Keep-Alive: {resp.values('Keep-Alive')}"


def expect_close(resp: Response) -> None:
    """Rule 3: `Connection: close` and no `Keep-Alive`."""
    assert "close" in resp.connection_tokens, f"Connection: {resp.values('Connection')}"
    assert "keep-alive" not in resp.connection_tokens, f"Connection: {resp.values('Connection')}"
    assert resp.values("Keep-Alive") == [], f"Keep-Alive: {resp.values('Keep-Alive')}"


def peer(resp: Response) -> dict[str, Any]:
    """The JSON of a `/peer` response."""
    assert resp.status == 200, resp
    assert resp.header("Content-Type") == "application/json", resp
    return json.loads(resp.body)


def run_subcases(cases: dict[str, Callable[[], None]]) -> None:
    """Run every variant of one conformance case; report all failing variants together."""
    failures = []
    for label, check in cases.items():
        try:
            check()
        except AssertionError as exc:
            failures.append(f"[{label}] {exc}")
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
