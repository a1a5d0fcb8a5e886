"""`python -m benchmarks doctor`: unit tests of its parsing and verdicts, and the real command
against the three reference servers (T = 1.7 s, N = 13), nginx and Node where installed.

Every doctor run is a subprocess started at once by one module fixture, so the idle waits of
all targets overlap: the module takes about one idle timeout plus one active check, not one
per target. The measured idle timeout may read a millisecond or so under T: the server starts
its timer when it hands the last byte to the kernel, the client starts its clock when it has
read it (tests/server_pool.py EARLY_SLACK_S).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks.common import UsageError
from benchmarks.doctor.defaults import Peer, PeerKind, load_peers
from benchmarks.doctor.headers import (
    KeepAliveHint,
    MalformedResponse,
    connection_tokens,
    parse_head,
    parse_keep_alive,
)
from benchmarks.doctor.target import parse_url
from benchmarks.doctor.verdicts import ServerIdle, Status, effective_idle, judge
from benchmarks.serverperf.nginx import NginxError, NginxProcess, find_nginx
from servers.launch import ServerProcess
from servers.options import ServerName, ServerOptions
from servers.policy import KeepAlivePolicy
from tests.server_pool import EARLY_SLACK_S, REPO

T, N = 1.7, 13
NGINX_T, NGINX_N = 2.0, 7
NODE_T_MS, NODE_N = 1500, 9
LATE_S = 0.3  # the doctor must see the close within T + 0.3 s
DOCTOR_FLAGS = ["--json", "--quiet", "--max-idle", "6", "--max-requests", "30",
                "--max-header-wait", "2.5"]  # fmt: skip
DOCTOR_TIMEOUT_S = 60


# --- headers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("timeout=5, max=100", KeepAliveHint(5.0, 100)),
        ("timeout=5", KeepAliveHint(5.0, None)),
        ("max=3, timeout=2", KeepAliveHint(2.0, 3)),
        ("Timeout=5;max=7", KeepAliveHint(5.0, 7)),
        ('timeout="10"', KeepAliveHint(10.0, None)),
        ("timeout=1.5", KeepAliveHint(1.5, None)),
        ("timeout=abc, max=-1", KeepAliveHint(None, None)),
        ("timeout=5, timeout=9", KeepAliveHint(5.0, None)),
        ("", KeepAliveHint()),
        (None, KeepAliveHint()),
    ],
)
def test_parse_keep_alive(value: str | None, expected: KeepAliveHint) -> None:
    assert parse_keep_alive(value) == expected


def test_parse_head_fields_and_connection_tokens() -> None:
    head = parse_head(
        b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nconnection: TE,  close\r\n"
        b"Keep-Alive: timeout=5\r\nContent-Length:3"
    )
    assert (head.version, head.status, head.reason) == ("1.1", 200, "OK")
    assert head.connection_tokens == {"keep-alive", "te", "close"}
    assert head.header("connection") == "Keep-Alive, TE,  close"
    assert head.header("Content-Length") == "3"
    assert head.closes


@pytest.mark.parametrize(
    ("raw", "closes"),
    [
        (b"HTTP/1.1 204 No Content", False),
        (b"HTTP/1.0 200 OK", True),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive", False),
        (b"HTTP/1.1 200 OK\r\nConnection: CLOSE", True),
        (b"HTTP/1.1 200", False),
    ],
)
def test_head_closes(raw: bytes, closes: bool) -> None:
    assert parse_head(raw).closes is closes


@pytest.mark.parametrize(
    "raw",
    [b"HTTP/2 200", b"HTTP/2.0 200 OK", b"garbage", b"HTTP/1.1 20 OK",
     b"HTTP/1.1 200 OK\r\nBad Header : x", b"HTTP/1.1 200 OK\r\nno colon"],
)  # fmt: skip
def test_parse_head_rejects(raw: bytes) -> None:
    with pytest.raises(MalformedResponse):
        parse_head(raw)


def test_connection_tokens_over_lines() -> None:
    assert connection_tokens(["keep-alive, Upgrade", " ", "close"]) == {
        "keep-alive", "upgrade", "close"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("http://127.0.0.1:8080", ("http", "127.0.0.1", 8080, "/")),
        ("https://example.test/a?b=1", ("https", "example.test", 443, "/a?b=1")),
        ("http://[::1]:81/x", ("http", "::1", 81, "/x")),
    ],
)
def test_parse_url(url: str, parsed: tuple[str, str, int, str]) -> None:
    assert parse_url(url) == parsed


@pytest.mark.parametrize(
    "url", ["ftp://x/", "127.0.0.1:80", "http://", "http://h:99999/", "http://u:p@h/",
            "http://h/a b", "http://h:port/"],
)  # fmt: skip
def test_parse_url_rejects(url: str) -> None:
    with pytest.raises(UsageError):
        parse_url(url)


# --- verdicts ---------------------------------------------------------------------------------


def peer(idle: float | None, kind: PeerKind = PeerKind.CLIENT, hint: float | None = None) -> Peer:
    return Peer("p", kind, idle, "P.idle", "https://example.test/src", hint)


def server(timeout: float | None, at_least: float | None = None, hint: float | None = None,
           kept: bool = True) -> ServerIdle:  # fmt: skip
    return ServerIdle(kept, timeout, at_least, hint)


@pytest.mark.parametrize(
    ("client", "srv", "status"),
    [
        (peer(60), server(75), Status.OK),
        (peer(74.5), server(75), Status.TIGHT),
        (peer(75), server(75), Status.RACES),
        (peer(90), server(75), Status.RACES),
        (peer(None), server(75), Status.RACES),
        (peer(60), server(None, at_least=120), Status.OK),
        (peer(119.5), server(None, at_least=120), Status.UNKNOWN),
        (peer(300), server(None, at_least=120), Status.UNKNOWN),
        (peer(None), server(None, at_least=120), Status.UNKNOWN),
        (peer(60), server(None, at_least=None), Status.UNKNOWN),
        (peer(60), server(None, kept=False), Status.NA),
        # hint-aware (Node's Agent): timeout=5 lowers 90 to 4, safe against a real 5 s
        (peer(90, hint=1), server(5, hint=5), Status.OK),
        # ...but a hint larger than the real timeout misleads it
        (peer(90, hint=1), server(5, hint=10), Status.RACES),
        # the hint only lowers: with no idle limit of its own, it is ignored
        (peer(None, hint=1), server(5, hint=5), Status.RACES),
        # timeout=1 minus 1 s: the Agent does not keep the socket at all
        (peer(5, hint=1), server(1.2, hint=1), Status.OK),
    ],
)
def test_judge(client: Peer, srv: ServerIdle, status: Status) -> None:
    assert judge(client, srv).status is status


def test_fix_raises_the_server_for_a_load_balancer_and_lowers_a_client() -> None:
    lb = judge(peer(60, PeerKind.LOAD_BALANCER), server(5))
    assert lb.fix is not None and lb.fix.startswith("raise the server's idle timeout to 61 s")
    client = judge(peer(90), server(5))
    assert client.fix is not None and client.fix.startswith("set P.idle to at most 4 s")
    assert judge(peer(60), server(75)).fix is None


def test_misleading_hint_is_named() -> None:
    verdict = judge(peer(90, hint=1), server(5, hint=10))
    assert "advertises timeout=10" in verdict.why
    assert verdict.effective_idle_s == 9


def test_effective_idle() -> None:
    assert effective_idle(peer(5, hint=1), 3) == (2, True)
    assert effective_idle(peer(5, hint=1), 60) == (5, True)
    assert effective_idle(peer(5, hint=1), 1) == (5, False)
    assert effective_idle(peer(5), 1) == (5, True)
    assert effective_idle(peer(5, hint=1), None) == (5, True)


def test_defaults_file_has_the_documented_figures_with_sources() -> None:
    peers = {p.name: p for p in load_peers()}
    expected = {
        "AWS Application Load Balancer": 60, "Google Cloud external Application Load Balancer": 600,
        "nginx as reverse proxy (upstream keepalive)": 60, "Go net/http DefaultTransport": 90,
        "Node http.globalAgent (Node >= 19)": 5, "urllib3 / requests": None,
        "aiohttp ClientSession (TCPConnector)": 15, "Chromium (used idle sockets)": 300,
        "curl / libcurl": 118,
    }  # fmt: skip
    for name, idle in expected.items():
        assert peers[name].idle_s == idle, name
    assert peers["Node http.globalAgent (Node >= 19)"].hint_aware_buffer_s == 1
    assert all(re.search(r"https://", p.source) for p in peers.values())


# --- the command ------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmarks", "doctor", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=DOCTOR_TIMEOUT_S)  # fmt: skip


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nobody listens on it once closed


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "http://[::1", "http://h:0x/"])
def test_malformed_url_is_one_line_exit_2(url: str) -> None:
    done = run_cli(url)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_unreachable_url_is_one_line_exit_2() -> None:
    done = run_cli(f"http://127.0.0.1:{closed_port()}/")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "cannot connect" in done.stderr, done.stderr
    assert done.stdout == ""


@dataclass
class Run:
    """One doctor run: its JSON, or why it has none."""

    label: str
    report: dict[str, Any] | None = None
    failure: str = ""
    skip: str = ""


NODE_SERVER = """
const http = require('http');
const [timeoutMs, maxRequests] = process.argv.slice(2).map(Number);
const server = http.createServer((req, res) => {
  res.writeHead(200, {'Content-Type': 'text/plain', 'Content-Length': 6});
  res.end('hello\\n');
});
server.keepAliveTimeout = timeoutMs;
server.maxRequestsPerSocket = maxRequests;
server.listen(0, '127.0.0.1', () => console.log(`READY http://127.0.0.1:${server.address().port}`));
process.on('SIGTERM', () => process.exit(0));
"""


def node_server_buffer_ms() -> int:
    """Node >= 18.?? keeps a socket keepAliveTimeout + this long (read from its own source)."""
    code = (
        "const s = process.binding('natives')._http_server;"
        "const m = /HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER\\s*=\\s*(\\d+)/.exec(s);"
        "console.log(m ? m[1] : '0')"
    )
    done = subprocess.run(["node", "-e", code], capture_output=True, text=True, timeout=30)
    return int(done.stdout.strip() or 0) if done.returncode == 0 else 0


class Targets:
    """Servers started for the module; every one is stopped at its end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.stoppers: list[Any] = []

    def reference(self, name: str, t: float, n: int, tls: bool = False) -> tuple[str, list[str]]:
        options = ServerOptions(name=ServerName(name), keepalive_timeout_s=t, keepalive_max=n,
                                tls=tls)  # fmt: skip
        proc = ServerProcess(options, stderr=subprocess.DEVNULL)
        self.stoppers.append(proc.stop)
        ready = proc.start()
        extra = ["--ca", str(ready.ca_path)] if ready.ca_path else []
        return ready.url + "/", extra

    def nginx(self) -> tuple[str, list[str]]:
        ng = NginxProcess(KeepAlivePolicy(NGINX_T, NGINX_N))
        self.stoppers.append(ng.stop)
        return ng.start() + "/", []

    def node(self) -> tuple[str, list[str]]:
        script = self.tmp / "server.js"
        script.write_text(NODE_SERVER)
        proc = subprocess.Popen(["node", str(script), str(NODE_T_MS), str(NODE_N)],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip

        def stop() -> None:
            proc.terminate()
            proc.wait(10)

        self.stoppers.append(stop)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"node server did not start: {line!r}")
        return line.split()[1] + "/", []

    def stop(self) -> None:
        for stop in self.stoppers:
            with contextlib.suppress(Exception):  # stop every one, whatever the others do
                stop()


def _doctor(label: str, start: Any, flags: list[str]) -> Run:
    try:
        url, extra = start()
    except NginxError as exc:
        return Run(label, skip=str(exc))
    except Exception as exc:  # noqa: BLE001 - reported as the test's failure
        return Run(label, failure=f"{label} did not start: {exc}")
    done = run_cli(url, *DOCTOR_FLAGS, *flags, *extra)
    if done.returncode != 0:
        return Run(label, failure=f"exit {done.returncode}: {done.stderr[-2000:]}")
    return Run(label, json.loads(done.stdout))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    targets = Targets(tmp_path_factory.mktemp("doctor"))
    jobs: dict[str, tuple[Any, list[str]]] = {
        name: (lambda name=name: targets.reference(name, T, N), [])
        for name in ("stdlib", "aiohttp", "uvloop")
    }
    jobs["uvloop-tls"] = (lambda: targets.reference("uvloop", T, N, tls=True), [])
    # N equal to the cap: told apart from "no limit" because cap + 1 requests are sent
    jobs["aiohttp-cap"] = (lambda: targets.reference("aiohttp", T, 30), [])
    # never closes within --max-idle, unlimited requests
    jobs["uvloop-long"] = (lambda: targets.reference("uvloop", 9.0, 0),
                           ["--max-idle", "1.5", "--max-header-wait", "0"])  # fmt: skip
    # nginx and Node as configured by hand (their own T and N), and as the matrix runs them
    # (python -m servers nginx|node) at the reference servers' T and N
    if find_nginx() is not None:
        jobs["nginx"] = (targets.nginx, [])
        jobs["nginx-wrapped"] = (lambda: targets.reference("nginx", T, N), [])
    if shutil.which("node") is not None:
        jobs["node"] = (targets.node, [])
        jobs["node-wrapped"] = (lambda: targets.reference("node", T, N), [])
    try:
        with ThreadPoolExecutor(len(jobs)) as pool:
            futures = {k: pool.submit(_doctor, k, start, f) for k, (start, f) in jobs.items()}
            yield {k: f.result() for k, f in futures.items()}
    finally:
        targets.stop()


def report_of(runs: dict[str, Run], label: str, install: str = "") -> dict[str, Any]:
    run = runs.get(label)
    if run is None:
        pytest.skip(f"{label} is not installed ({install})")
    if run.skip:
        pytest.skip(run.skip)
    if run.report is None:
        pytest.fail(run.failure, pytrace=False)
    return run.report


def assert_idle(report: dict[str, Any], t: float) -> None:
    measured = report["idle_timeout_s"]
    assert measured is not None, report["idle"]
    assert t - EARLY_SLACK_S <= measured <= t + LATE_S, report["idle"]
    assert len(report["idle"]["samples"]) >= 3
    assert all(s["close"] in ("fin", "reset") for s in report["idle"]["samples"])
    active = report["active_check"]
    assert active["under"] == "answered" and active["over"].startswith("closed"), active


@pytest.mark.parametrize("name", ["stdlib", "aiohttp", "uvloop"])
def test_reference_servers(runs: dict[str, Run], name: str) -> None:
    report = report_of(runs, name)
    assert_idle(report, T)
    assert report["max_requests"] == N
    assert report["max_requests_detail"]["announced"] is True
    assert report["advertised"]["keep_alive"] == f"timeout=1, max={N - 1}"
    assert report["persistence"]["http11"] and report["persistence"]["http10"]
    assert report["pipelining"]["in_order"] is True
    assert report["closing"]["close"] == "fin" and report["closing"]["response_read"]
    # H defaults to T on the reference servers: the trickle is cut after about T
    assert report["header_deadline"]["tolerated_s"] == pytest.approx(T, abs=0.5)
    verdicts = {v["peer"]: v["status"] for v in report["verdicts"]}
    assert verdicts["Go net/http DefaultTransport"] == "races"
    assert verdicts["Node http.globalAgent (Node >= 19)"] == "ok"  # timeout=1: never reused


def test_tls_facts(runs: dict[str, Run]) -> None:
    report = report_of(runs, "uvloop-tls")
    assert_idle(report, T)
    tls = report["tls"]
    assert tls["version"] in ("TLSv1.2", "TLSv1.3")
    assert tls["handshake_ms"] > 0
    assert tls["alpn"] in (None, "http/1.1")  # offered h2 too; our servers speak only 1.1
    assert tls["ticket"] is True and tls["resumed"] is True, tls


def test_limit_equal_to_the_cap_is_found(runs: dict[str, Run]) -> None:
    report = report_of(runs, "aiohttp-cap")
    assert report["max_requests"] == 30
    assert report["max_requests_detail"]["sent"] == 30


def test_server_that_outlasts_max_idle(runs: dict[str, Run]) -> None:
    report = report_of(runs, "uvloop-long")
    assert report["idle_timeout_s"] is None
    assert report["idle_timeout_at_least_s"] == 1.5
    assert report["idle"]["beyond"] == "answered"
    assert report["max_requests"] is None and report["max_requests_detail"]["sent"] == 31
    verdicts = {v["peer"]: v["status"] for v in report["verdicts"]}
    assert verdicts["AWS Application Load Balancer"] == "unknown"  # never "ok"
    assert verdicts["urllib3 / requests"] == "unknown"


def test_nginx(runs: dict[str, Run]) -> None:
    report = report_of(runs, "nginx", "apt-get install -y nginx")
    assert_idle(report, NGINX_T)
    assert report["max_requests"] == NGINX_N
    assert report["advertised"]["keep_alive"] == f"timeout={NGINX_T:g}"


def test_node(runs: dict[str, Run]) -> None:
    report = report_of(runs, "node", "apt-get install -y nodejs")
    # Node keeps the socket keepAliveTimeout + a buffer it adds itself (1 s in Node 20)
    assert_idle(report, (NODE_T_MS + node_server_buffer_ms()) / 1000)
    assert report["max_requests"] == NODE_N
    assert report["advertised"]["keep_alive"] == f"timeout={NODE_T_MS // 1000}, max={NODE_N}"


@pytest.mark.parametrize(
    ("name", "install"),
    [("nginx", "apt-get install -y nginx"), ("node", "apt-get install -y nodejs")],
)
def test_wrapped_nginx_and_node_at_the_reference_t_and_n(
    runs: dict[str, Run], name: str, install: str
) -> None:
    """`python -m servers nginx|node --keepalive-timeout 1.7 --keepalive-max 13`: Debian's
    binaries with our settings, measured as the reference servers are (Node adds its buffer)."""
    report = report_of(runs, f"{name}-wrapped", install)
    buffer_s = node_server_buffer_ms() / 1000 if name == "node" else 0.0
    assert_idle(report, T + buffer_s)
    assert report["max_requests"] == N
    assert report["persistence"]["http11"] and report["pipelining"]["in_order"] is True


def test_readme_defaults_table_is_current() -> None:
    from benchmarks.common import replace_section
    from benchmarks.doctor.defaults import TABLE_BEGIN, TABLE_END, defaults_table, load_servers

    assert {s.name for s in load_servers()} >= {"nginx", "Apache httpd 2.4", "Node http.Server"}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert replace_section(readme, TABLE_BEGIN, TABLE_END, defaults_table()) == readme, (
        "run `python -m benchmarks.doctor.defaults --update README.md`"
    )


def test_a_bad_server_entry_is_one_line(tmp_path: Path) -> None:
    from benchmarks.doctor.defaults import load_servers

    bad = tmp_path / "defaults.toml"
    bad.write_text('[[server]]\nname = "x"\nidle_s = -1\nsetting = "s"\nsource = "u"\n')
    with pytest.raises(UsageError, match="idle_s must be > 0"):
        load_servers(bad)
