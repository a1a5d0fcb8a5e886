"""ServerOptions and `python -m servers`: round trips, bad flags, READY line, signals."""

from __future__ import annotations

import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servers.launch import parse_ready_line, server_command
from servers.options import (
    OptionsError,
    ServerName,
    ServerOptions,
    TlsVersion,
    build_parser,
    parse_args,
)
from tests.server_pool import REPO, SERVER_NAMES, module_path


@pytest.fixture
def pem_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not checked here\n")
    key.write_text("not checked here\n")
    return cert, key


ROUND_TRIP = [
    ServerOptions(ServerName.STDLIB),
    ServerOptions(ServerName.AIOHTTP, port=8080, keepalive_timeout_s=1.0, keepalive_max=3),
    ServerOptions(ServerName.UVLOOP, keepalive_timeout_s=0.0, keepalive_max=0),
    ServerOptions(ServerName.UVLOOP, keepalive_timeout_s=2.5, header_timeout_s=0.25),
    ServerOptions(ServerName.STDLIB, host="::1", keepalive_max=1, tls=True, log_connections=True),
    ServerOptions(ServerName.UVLOOP, tls=True, tls_version=TlsVersion.TLS12),
    ServerOptions(ServerName.AIOHTTP, tls=True, tls_version=TlsVersion.TLS13),
    # More significant digits than `:g` keeps (6): the round trip must not round them.
    ServerOptions(ServerName.STDLIB, keepalive_timeout_s=12345.678, header_timeout_s=0.1234567),
    ServerOptions(ServerName.AIOHTTP, max_connections=100),
    ServerOptions(ServerName.UVLOOP, max_connections=2, reclaim_idle=True),
]


@pytest.mark.parametrize("options", ROUND_TRIP, ids=lambda o: " ".join(o.to_argv()))
def test_to_argv_parse_args_round_trip(options: ServerOptions) -> None:
    assert parse_args(options.to_argv()) == options


def test_round_trip_with_certificate_files(pem_files: tuple[Path, Path]) -> None:
    cert, key = pem_files
    options = ServerOptions(ServerName.UVLOOP, tls=True, certfile=cert, keyfile=key)
    argv = options.to_argv()
    assert argv[-4:] == ["--certfile", str(cert), "--keyfile", str(key)]
    assert parse_args(argv) == options


def test_defaults() -> None:
    options = parse_args(["stdlib"])
    assert options == ServerOptions(ServerName.STDLIB)
    assert (options.host, options.port) == ("127.0.0.1", 0)
    assert (options.keepalive_timeout_s, options.keepalive_max) == (5.0, 100)
    assert options.header_timeout_s is None and not options.tls and not options.log_connections


def test_to_argv_spells_every_flag_once() -> None:
    argv = ServerOptions(
        ServerName.AIOHTTP, keepalive_timeout_s=1, keepalive_max=3, header_timeout_s=2, tls=True
    ).to_argv()
    assert argv == [
        "aiohttp", "--host", "127.0.0.1", "--port", "0", "--keepalive-timeout", "1",
        "--keepalive-max", "3", "--header-timeout", "2", "--tls",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("t", "h", "effective"), [(5.0, None, 5.0), (1.0, None, 1.0), (0.0, None, 5.0), (0.0, 2.0, 2.0)]
)
def test_effective_header_timeout(t: float, h: float | None, effective: float) -> None:
    options = ServerOptions(ServerName.STDLIB, keepalive_timeout_s=t, header_timeout_s=h)
    assert options.effective_header_timeout_s == effective


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"port": -1}, "--port"),
        ({"port": 65536}, "--port"),
        ({"keepalive_timeout_s": -0.5}, "--keepalive-timeout"),
        ({"keepalive_max": -1}, "--keepalive-max"),
        ({"header_timeout_s": 0.0}, "--header-timeout"),
        ({"header_timeout_s": -1.0}, "--header-timeout"),
        ({"tls": True, "certfile": Path("/nonexistent.pem")}, "together"),
        ({"certfile": Path("/a"), "keyfile": Path("/b")}, "--tls"),
        ({"tls_version": TlsVersion.TLS12}, "--tls-version needs --tls"),
        ({"tls": True, "certfile": Path("/nonexistent/a"), "keyfile": Path("/b")}, "no such"),
        ({"max_connections": -1}, "--max-connections"),
        ({"reclaim_idle": True}, "--reclaim-idle needs --max-connections"),
    ],
)
def test_invalid_options_raise(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(OptionsError, match=re.escape(fragment)):
        ServerOptions(ServerName.STDLIB, **kwargs)  # type: ignore[arg-type]


def test_max_connections_is_for_the_reference_servers() -> None:
    with pytest.raises(OptionsError, match="not nginx"):
        ServerOptions(ServerName.NGINX, max_connections=10)


BAD_ARGV = [
    pytest.param(["stdlib", "--keepalive-timeout", "-1"], "--keepalive-timeout", id="negative-t"),
    pytest.param(["stdlib", "--keepalive-max", "-3"], "--keepalive-max", id="negative-n"),
    pytest.param(["stdlib", "--keepalive-max", "many"], "--keepalive-max", id="non-int-n"),
    pytest.param(["stdlib", "--header-timeout", "0"], "--header-timeout", id="zero-h"),
    pytest.param(["uvloop", "--keepalive-timeout", "inf"], "--keepalive-timeout", id="infinite-t"),
    pytest.param(["uvloop", "--keepalive-timeout", "nan"], "--keepalive-timeout", id="nan-t"),
    pytest.param(["aiohttp", "--header-timeout", "inf"], "--header-timeout", id="infinite-h"),
    pytest.param(["stdlib", "--keepalive-timeout", "1e300"], "at most 86400", id="huge-t"),
    pytest.param(["uvloop", "--header-timeout", "86401"], "at most 86400", id="huge-h"),
    pytest.param(["stdlib", "--port", "70000"], "--port", id="port-range"),
    pytest.param(["apache"], "invalid choice", id="unknown-server"),
    pytest.param([], "required", id="no-server"),
    pytest.param(["uvloop", "--bogus"], "unrecognized", id="unknown-flag"),
    pytest.param(["uvloop", "--certfile", "/x.pem", "--keyfile", "/y.pem"], "--tls", id="no-tls"),
    pytest.param(["uvloop", "--max-connections", "-2"], "--max-connections", id="negative-m"),
    pytest.param(["stdlib", "--reclaim-idle"], "--reclaim-idle", id="reclaim-without-m"),
    pytest.param(["uvloop", "--tls", "--tls-version", "1.1"], "--tls-version", id="tls-1.1"),
    pytest.param(["uvloop", "--tls-version", "1.3"], "needs --tls", id="version-no-tls"),
]


@pytest.mark.parametrize(("argv", "fragment"), BAD_ARGV)
def test_parse_args_errors_are_one_line(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("python -m servers: error: ") and fragment in err, err


def _run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servers", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def _assert_one_line_exit_2(done: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stdout == "", "nothing on stdout (no READY line) for a bad command"
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.endswith("\n"), done.stderr
    assert done.stderr.startswith("python -m servers: error: "), done.stderr
    assert fragment in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (("stdlib", "--keepalive-timeout", "-1"), "--keepalive-timeout"),
        (("apache",), "invalid choice"),
        (("aiohttp", "--keepalive-max", "x"), "--keepalive-max"),
        (("uvloop", "--tls", "--certfile", "/nonexistent.pem", "--keyfile", "/k"), "no such"),
    ],
)
def test_cli_bad_flags_print_one_line_and_exit_2(argv: tuple[str, ...], fragment: str) -> None:
    _assert_one_line_exit_2(_run_cli(*argv), fragment)


@pytest.mark.parametrize("name", SERVER_NAMES)
def test_cli_port_in_use_prints_one_line_and_exits_2(name: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = _run_cli(name, "--port", str(port))
    _assert_one_line_exit_2(done, f"cannot listen on 127.0.0.1:{port}")


def test_cli_bad_certificate_prints_one_line_and_exits_2(pem_files: tuple[Path, Path]) -> None:
    cert, key = pem_files
    done = _run_cli("stdlib", "--tls", "--certfile", str(cert), "--keyfile", str(key))
    _assert_one_line_exit_2(done, "cannot load certificate")


def test_help_mentions_the_ready_line() -> None:
    assert "READY <url> control=<url> pid=<pid> server=<name>" in build_parser().format_help()


_READY = re.compile(
    r"^READY (?P<scheme>https?)://127\.0\.0\.1:(?P<port>[1-9]\d*) "
    r"control=http://127\.0\.0\.1:(?P<cport>[1-9]\d*) pid=(?P<pid>\d+) server=(?P<server>\w+)"
    r"(?: ca=(?P<ca>\S+))?\n$"
)


def _start(options: ServerOptions) -> subprocess.Popen[str]:
    if not module_path(options.name.value).is_file():
        pytest.fail(f"servers/{options.name}_server.py does not exist (yet)", pytrace=False)
    return subprocess.Popen(
        server_command(options),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _first_line(proc: subprocess.Popen[str], timeout_s: float = 20.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    if not ready:
        pytest.fail(f"no READY line within {timeout_s:g} s")
    return proc.stdout.readline()


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"server ignored signal {sig} for 10 s")
    return proc.returncode, out, err


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("name", SERVER_NAMES)
def test_ready_line_format(name: str, tls: bool) -> None:
    proc = _start(ServerOptions(ServerName(name), tls=tls))
    try:
        line = _first_line(proc)
        match = _READY.match(line)
        assert match, f"READY line {line!r} does not match the documented format"
        assert match["scheme"] == ("https" if tls else "http")
        assert match["server"] == name
        assert int(match["pid"]) == proc.pid
        assert match["port"] != match["cport"]
        info = parse_ready_line(line)
        assert info.port == int(match["port"]) and info.server == name
        if tls:
            assert info.ca_path is not None and info.ca_path.is_file()
            assert info.ca_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        else:
            assert match["ca"] is None
        with socket.create_connection(("127.0.0.1", info.port), timeout=5):
            pass  # it listens
    finally:
        code, _, err = _stop(proc)
    assert code == 0, f"exit status {code} after SIGTERM; stderr: {err[-800:]}"
    if tls:
        assert info.ca_path is not None and not info.ca_path.exists(), "CA file left behind"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("name", SERVER_NAMES)
def test_signal_exits_0_without_traceback(name: str, sig: int) -> None:
    proc = _start(ServerOptions(ServerName(name), keepalive_timeout_s=30))
    try:
        line = _first_line(proc)
        info = parse_ready_line(line)
        # An idle keep-alive connection is open: shutting down must not wait for its timeout.
        with socket.create_connection(("127.0.0.1", info.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            started = time.monotonic()
            code, out, err = _stop(proc, sig)
            elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            _stop(proc, signal.SIGKILL)
    assert code == 0, f"exit status {code}; stderr: {err[-800:]}"
    assert "Traceback" not in err, err[-2000:]
    assert out == "", f"stdout after READY: {out[:200]!r}"
    assert elapsed < 5.0, f"shutdown took {elapsed:.1f} s with an idle connection open"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
@pytest.mark.parametrize("name", SERVER_NAMES)
def test_ipv6_host_serves_and_reports(name: str) -> None:
    """`--host ::1`: the server and its control listener both bind IPv6 (no AF_INET crash)."""
    proc = _start(ServerOptions(ServerName(name), host="::1"))
    try:
        line = _first_line(proc)
        assert line.startswith("READY http://[::1]:"), line
        assert "control=http://[::1]:" in line, line
        info = parse_ready_line(line)
        with socket.create_connection(("::1", info.port), timeout=5) as sock:
            sock.sendall(b"GET /peer HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            reply = _read_all(sock)
        assert reply.startswith(b"HTTP/1.1 200 ") and b'"client_host": "::1"' in reply, reply
        control_port = int(line.split("control=http://[::1]:")[1].split()[0])
        with socket.create_connection(("::1", control_port), timeout=5) as sock:
            sock.sendall(b"GET /counters HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            counters = _read_all(sock)
        assert b'"connections_accepted": 1' in counters, counters
    finally:
        code, _, err = _stop(proc)
    assert code == 0, f"exit status {code}; stderr: {err[-800:]}"


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
