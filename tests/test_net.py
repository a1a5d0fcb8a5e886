"""The delay line (issue 10): namespaces, the relay, `net run`, and what they leave behind.

Tests that build a line need root, /dev/net/tun and `ip`; without them they are skipped with the
reason. Timing checks are lower bounds only (the relay never releases a packet early, so no
machine can be too fast for them); a slow machine only makes them pass by a wider margin.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.net import DelayLine, LinkSpec, NetError, netns
from benchmarks.net.line import LinkStats
from benchmarks.net.relay import Histogram
from servers.launch import ReadyInfo, ServerProcess, parse_ready_line
from servers.options import ServerName, ServerOptions
from servers.runtime import certificate_names
from tests.wire_client import G, RawConnection

ROOT = Path(__file__).resolve().parent.parent


def _why_not() -> str | None:
    try:
        netns.check_preconditions()
    except NetError as exc:
        return str(exc)
    return None


needs_line = pytest.mark.skipif(_why_not() is not None, reason=f"{_why_not()}")


def net(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "net", *args],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def leftovers(pid: int) -> list[str]:
    """Namespaces and root devices whose names carry `pid`."""
    return netns.our_namespaces(pid) + [
        d for d in netns.our_root_devices() if netns.owner_pid(d) == pid
    ]


# -- without root: validation, names, certificate, statistics -----------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rtt_ms": -1}, "--rtt must be between 0"),
        ({"rtt_ms": float("nan")}, "--rtt must be between 0"),
        ({"loss_pct": 101}, "--loss must be between 0 and 100"),
        ({"jitter_ms": -2}, "--jitter must be"),
        ({"bandwidth_mbit": 0}, "--bandwidth must be a positive"),
        ({"mtu": 100}, "--mtu must be between"),
        ({"queue_packets": 0}, "--queue must be at least 1"),
        ({"clients": 0}, "--clients must be between"),
    ],
)
def test_link_spec_rejects_bad_values(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(NetError, match=message):
        LinkSpec(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rtt", "-5"], "--rtt must be between 0 and 60000 ms, got -5.0"),
        (["--rtt", "10", "--loss", "150"], "--loss must be between 0 and 100"),
        (["--rtt", "ten"], "invalid float value: 'ten'"),
    ],
)
def test_net_run_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    proc = net("run", *args, "--server", "uvloop", "--", "true")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_net_run_without_a_client_command_says_so() -> None:
    proc = net("run", "--rtt", "10", "--server", "uvloop")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert (
        err.strip()
        == "python -m benchmarks net: error: give the client command after --, e.g. -- curl {url}/"
    )


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to drop it"
)
def test_without_root_one_line_exit_2() -> None:
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    argv = [*nobody, sys.executable, "-m", "benchmarks", "net", "run", "--rtt", "10",
            "--server", "uvloop", "--", "true"]  # fmt: skip
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr == (
        "python -m benchmarks net: error: the delay line needs root "
        "(network namespaces and TUN devices)\n"
    )


def test_names_fit_a_device_and_carry_their_owner() -> None:
    names = [netns.namespace_name(4194304, 26, "c63"), netns.namespace_name(12, 0, "s")]
    assert names[1] == "kab12s"
    assert all(len(n) <= 15 for n in names)
    assert [netns.owner_pid(n) for n in names] == [4194304, 12]
    assert netns.owner_pid("kabel0") is None and netns.owner_pid("eth0") is None


def test_lateness_histogram_percentiles() -> None:
    hist = Histogram()
    for us in range(1, 101):
        hist.record(us / 1e6)
    assert (hist.percentile(50), hist.percentile(99)) == (50, 99)
    assert hist.max_us == pytest.approx(100)
    assert Histogram().percentile(50) is None


def test_generated_certificate_names_the_bound_host() -> None:
    """A TLS server bound to another address (here 127.0.0.2) verifies against that address."""
    assert certificate_names("198.18.0.2")[-1] == "198.18.0.2"
    assert certificate_names("0.0.0.0") == certificate_names("127.0.0.1")
    options = ServerOptions(ServerName.UVLOOP, host="127.0.0.2", tls=True)
    with ServerProcess(options) as server:
        assert server.ready is not None and server.ready.ca_path is not None
        ctx = ssl.create_default_context(cafile=str(server.ready.ca_path))
        with (
            socket.create_connection(("127.0.0.2", server.ready.port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.2") as tls,
        ):
            tls.sendall(G("/", "Connection: close"))
            assert tls.recv(100).startswith(b"HTTP/1.1 200")


# -- with root: the line itself ---------------------------------------------------------------


RTT_MS = 20.0


@pytest.fixture(scope="module")
def line() -> Iterator[DelayLine]:
    if _why_not() is not None:
        pytest.skip(str(_why_not()))
    with DelayLine(LinkSpec(rtt_ms=RTT_MS)) as delay_line:
        yield delay_line
    assert netns.our_namespaces(os.getpid()) == []


@pytest.fixture(scope="module")
def uvloop(line: DelayLine) -> ReadyInfo:
    argv = [sys.executable, "-m", "servers", "uvloop", "--host", line.server.address]
    proc = line.spawn(
        line.server, argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    ready = parse_ready_line(proc.stdout.readline())
    assert ready.host == line.server.address
    return ready


def _get(conn: RawConnection) -> None:
    conn.send(G("/"))
    assert conn.response().status == 200


@needs_line
def test_a_new_connection_takes_two_round_trips_a_reused_one_one(
    line: DelayLine, uvloop: ReadyInfo
) -> None:
    rtt_s = RTT_MS / 1e3
    uvloop_port = uvloop.port
    for _ in range(3):
        start = time.monotonic()
        with RawConnection(
            line.connect(line.clients[0], (line.server.address, uvloop_port))
        ) as conn:
            _get(conn)  # SYN / SYN-ACK, then request / response
            fresh = time.monotonic() - start
            for _ in range(3):
                start = time.monotonic()
                _get(conn)
                reused = time.monotonic() - start
                assert reused >= rtt_s, f"reused request in {reused * 1e3:.2f} ms < one RTT"
        assert fresh >= 2 * rtt_s, f"new connection in {fresh * 1e3:.2f} ms < two RTTs"
    stats = line.stats()
    assert stats.packets > 0 and stats.drops == 0 and stats.lateness_p50_us is not None


@needs_line
def test_the_root_namespace_reads_the_servers_counters(line: DelayLine, uvloop: ReadyInfo) -> None:
    """The control listener binds 198.18.0.2 too; `fetch` reads it from the server namespace."""
    before = line.stats().received
    with RawConnection(line.connect(line.clients[0], (uvloop.host, uvloop.port))) as conn:
        _get(conn)
    counters = json.loads(line.fetch(line.server, uvloop.control_url + "/counters"))
    assert counters["pid"] == uvloop.pid and counters["connections_accepted"] >= 1
    time.sleep(0.1)  # the FIN exchange of the connection above
    assert line.stats().received - before < 20  # the control fetch did not cross the relay
    snmp = [row.split() for row in line.proc_net(line.server, "snmp").splitlines()]
    tcp = dict(zip(*[row[1:] for row in snmp if row[0] == "Tcp:"], strict=True))
    assert int(tcp["PassiveOpens"]) >= 1  # the server namespace counts only its own sockets


@needs_line
def test_jitter_never_reorders() -> None:
    """+-5 ms of jitter on a 2 ms line: 300 numbered datagrams still arrive in order."""
    with DelayLine(LinkSpec(rtt_ms=2, jitter_ms=5, seed=3)) as jittery:
        with jittery.inside(jittery.server):
            receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with jittery.inside(jittery.clients[0]):
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with receiver, sender:
            _big_receive_buffer(receiver)
            receiver.bind((jittery.server.address, 0))
            for i in range(300):
                sender.sendto(i.to_bytes(4, "big"), receiver.getsockname())
                time.sleep(0.0002)
            receiver.settimeout(0.5)
            order = []
            with contextlib.suppress(TimeoutError):
                while True:
                    order.append(int.from_bytes(receiver.recv(4), "big"))
    assert order == list(range(300))


def _serve_sha256(listener: socket.socket, result: dict[str, str]) -> None:
    conn, _ = listener.accept()
    digest = hashlib.sha256()
    with conn:
        while chunk := conn.recv(65536):
            digest.update(chunk)
        conn.sendall(digest.hexdigest().encode())
    result["digest"] = digest.hexdigest()


@needs_line
def test_every_byte_arrives_in_order_under_loss() -> None:
    """5% loss each way: TCP retransmits, and the relay never corrupts or reorders a stream."""
    payload = random.Random(10).randbytes(1 << 20)
    with DelayLine(LinkSpec(rtt_ms=2, loss_pct=5, seed=10)) as lossy:
        with lossy.inside(lossy.server):
            listener = socket.create_server((lossy.server.address, 0))
        result: dict[str, str] = {}
        thread = threading.Thread(target=_serve_sha256, args=(listener, result), daemon=True)
        thread.start()
        with lossy.connect(lossy.clients[0], listener.getsockname(), timeout_s=60) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            echoed = b"".join(iter(lambda: sock.recv(100), b""))
        thread.join(60)
        listener.close()
        stats = lossy.stats()
    assert echoed.decode() == hashlib.sha256(payload).hexdigest() == result["digest"]
    assert stats.drops_loss > 0  # the loss really happened, and TCP recovered


@needs_line
def test_drops_are_the_asked_share() -> None:
    """Seeded 20% loss over 2,000 UDP datagrams (one direction each): binomial bounds, 6 sigma."""
    sent, share = 2000, 0.20
    with DelayLine(LinkSpec(rtt_ms=1, loss_pct=share * 100, seed=7)) as lossy:
        with lossy.inside(lossy.server):
            receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with lossy.inside(lossy.clients[0]):
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with receiver, sender:
            _big_receive_buffer(receiver)
            receiver.bind((lossy.server.address, 0))
            for i in range(sent):
                sender.sendto(i.to_bytes(4, "big"), receiver.getsockname())
                if i % 50 == 49:
                    time.sleep(0.001)  # keep the socket's and the device's queues short
            received = len(_drain(receiver, quiet_s=0.5))
        stats = lossy.stats()
    mean, sigma = sent * share, math.sqrt(sent * share * (1 - share))
    assert stats.drops_loss == sent - received  # every missing datagram is one the relay dropped
    assert abs(stats.drops_loss - mean) <= 6 * sigma, (stats.drops_loss, mean, sigma)
    assert stats.drops_queue == 0 and stats.unroutable == 0


SO_RCVBUFFORCE = 33  # asm-generic/socket.h; root may exceed net.core.rmem_max


def _big_receive_buffer(sock: socket.socket) -> None:
    """Room for every datagram of a test: the receiver reads only after the sender is done."""
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)


def _drain(sock: socket.socket, quiet_s: float) -> list[float]:
    """When each datagram arrived, until none arrived for `quiet_s`."""
    sock.settimeout(quiet_s)
    arrivals = []
    try:
        while True:
            sock.recv(2048)
            arrivals.append(time.monotonic())
    except TimeoutError:
        return arrivals


@needs_line
def test_bandwidth_limit_drops_at_the_queue() -> None:
    """1 Mbit/s behind an 8-packet queue: a burst of 100 full datagrams mostly waits or drops."""
    spec = LinkSpec(rtt_ms=0, bandwidth_mbit=1, queue_packets=8)
    with DelayLine(spec) as slow:
        with slow.inside(slow.server):
            receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with slow.inside(slow.clients[0]):
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with receiver, sender:
            receiver.bind((slow.server.address, 0))
            start = time.monotonic()
            for _ in range(100):
                sender.sendto(bytes(1400), receiver.getsockname())
            arrivals = _drain(receiver, quiet_s=0.5)
        stats = slow.stats()
    # 1428-byte IP packets at 1 Mbit/s take 11.4 ms each on the wire: the k-th is not there
    # before k of them were serialised
    assert arrivals[-1] - start >= len(arrivals) * 0.0114
    assert stats.drops_queue == 100 - len(arrivals) > 0


# -- net run and what it leaves behind -----------------------------------------------------------


@needs_line
def test_net_run_passes_output_and_status_through_and_leaves_nothing() -> None:
    script = (
        "import os, sys, urllib.request as u\n"
        "sys.stdout.write(u.urlopen(os.environ['SERVER_URL']).read().decode())\n"
        "raise SystemExit(3)\n"
    )
    proc = net("run", "--rtt", "10", "--server", "uvloop --keepalive-timeout 5", "--",
               sys.executable, "-c", script)  # fmt: skip
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert out == "Hello, keep-alive!\n"
    figures = [line for line in err.splitlines() if line.startswith("net: link rtt 10 ms:")]
    assert figures and "drops (0 loss, 0 queue)" in figures[0], err
    assert leftovers(proc.pid) == []


@needs_line
def test_url_placeholder_and_any_server_command() -> None:
    server = f"{sys.executable} -m http.server --bind {{host}} {{port}}"
    curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_connect}", "{url}/"]
    proc = net("run", "--rtt", "4", "--server", server, "--server-port", "8081", "--", *curl)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    code, connect_s = out.split()
    assert code == "200" and float(connect_s) >= 0.004
    assert leftovers(proc.pid) == []


@needs_line
def test_a_failing_server_leaves_nothing() -> None:
    proc = net("run", "--rtt", "10", "--server", "uvloop --keepalive-max -1", "--", "true")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "the uvloop server exited with status 2 before READY" in err
    assert leftovers(proc.pid) == []


def _wait_for_client(pid: int) -> str:
    """The client namespace of `net run` pid, once a process runs in it."""
    name = netns.namespace_name(pid, 0, "c0")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if name in netns.our_namespaces(pid) and netns.namespace_pids(name):
            return name
        time.sleep(0.05)
    raise AssertionError("the client never started")


@needs_line
def test_sigint_tears_everything_down() -> None:
    proc = net("run", "--rtt", "10", "--server", "uvloop", "--", "sleep", "60")
    name = _wait_for_client(proc.pid)
    server_pids = netns.namespace_pids(netns.namespace_name(proc.pid, 0, "s"))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "interrupted, line removed" in err
    assert leftovers(proc.pid) == [] and name not in netns.list_namespaces()
    assert server_pids and not any(netns.pid_alive(p) for p in server_pids)


@needs_line
def test_after_kill_9_cleanup_removes_what_was_left() -> None:
    proc = net("run", "--rtt", "10", "--server", "uvloop", "--", "sleep", "60")
    _wait_for_client(proc.pid)
    inside = [p for ns in netns.our_namespaces(proc.pid) for p in netns.namespace_pids(ns)]
    proc.kill()
    proc.communicate(timeout=30)
    left = leftovers(proc.pid)  # a crash leaves the namespaces: nothing could remove them
    cleaner = net("cleanup")
    out, err = cleaner.communicate(timeout=60)
    assert cleaner.returncode == 0, err
    # Any start cleans stale namespaces, so a concurrent test worker starting a line may have
    # beaten us to it (then `left` is already empty): what was left is gone either way, and each
    # name we removed is one that was left.
    assert leftovers(proc.pid) == []
    removed = set(out.split()[2:]) if out.startswith("removed") else set()
    assert {n for n in removed if netns.owner_pid(n) == proc.pid} <= set(left)
    assert inside and not any(netns.pid_alive(p) and not netns._is_zombie(p) for p in inside)


def test_link_stats_summary_line() -> None:
    raw = {
        "packets": 1234, "received": 1240, "drops_loss": 5, "drops_queue": 1, "unroutable": 0,
        "lateness_p50_us": 80, "lateness_p99_us": 950, "lateness_max_us": 2000.5,
        "cpu_user_s": 0.2, "cpu_system_s": 0.1, "elapsed_s": 3.0,
    }  # fmt: skip
    assert LinkStats.from_json(raw).summary() == (
        "1,234 packets, 6 drops (5 loss, 1 queue), lateness p50 80 us p99 950 us max 2,000 us, "
        "relay cpu 0.30 s in 3.0 s"
    )
