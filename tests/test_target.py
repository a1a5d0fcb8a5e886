"""`run --target URL` (issue 13): the clients against a server the harness did not start.

A reference server started here (port 0, READY read back) stands in for "your server"; the
harness gets only its URL (and pid), so every figure comes from the clients and the kernel.
nginx, where installed, is the same check against a server nobody here wrote.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.harness.cli import main
from benchmarks.records.schema import ResultRow, read_rows
from servers import launch

QUICK_CELL = ["--quick", "--duration", "0.6", "--warmup", "0.2", "--concurrency", "4"]
CLIENT = ["--clients", "pyperf-concurrent-raw"]


def _start(argv: list[str]) -> Iterator[tuple[str, int]]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        ready = launch.read_ready(proc, argv[3])
        yield ready.url, proc.pid
    finally:
        launch.terminate(proc, group=True)


@pytest.fixture(scope="module")
def uvloop_server() -> Iterator[tuple[str, int]]:
    yield from _start([sys.executable, "-m", "servers", "uvloop", "--port", "0"])


@pytest.fixture(scope="module")
def nginx_server() -> Iterator[tuple[str, int]]:
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    yield from _start([sys.executable, "-m", "servers", "nginx", "--port", "0"])


def _rows(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[ResultRow]:
    rc = main([*argv, "--results-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return read_rows(Path(out.strip().splitlines()[-1]))


def _check(rows: list[ResultRow], url: str, cpu: bool) -> None:
    assert {r.key.mode for r in rows} == {"pooled", "unpooled"}
    for r in rows:
        assert (r.status, r.key.server, r.target_url) == ("ok", "target", url), r.note
        # Pooled reused, unpooled did not, by the client's count. The peak comes from samples of
        # /proc/net/tcp five times a second: on a crowded machine a short window may miss the
        # moments with every connection open (an honest "at most N open at once"), never the
        # count of connections, which is what the reuse check is about.
        sampled_low = "connections were open at once" in r.note
        assert r.valid == 1 or sampled_low, r.note
        assert r.requests > 0 and r.connections_opened >= 4
        # Pooled connections stay open for a whole load window, and the monitor samples every
        # window (densely for its first second, from the moment its process appears); an
        # unpooled connection lives for microseconds, so any sample may see none open (peak 0).
        assert r.peak_open_connections >= 1 or r.key.mode == "unpooled", r.note
        assert "connections counted by the client" in r.note
        assert (r.server_cpu_s > 0) if cpu else (r.server_cpu_s != r.server_cpu_s)  # NaN: blank
    pooled, unpooled = sorted(rows, key=lambda r: r.key.mode)
    assert pooled.requests_per_connection > 5 and unpooled.requests_per_connection <= 1.1


def test_target_pooled_and_unpooled(
    uvloop_server: tuple[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, pid = uvloop_server
    rows = _rows([*QUICK_CELL, *CLIENT, "--target", url + "/", "--target-pid", str(pid)],
                 tmp_path, capsys)  # fmt: skip
    _check(rows, url + "/", cpu=True)


def test_target_without_pid_leaves_cpu_blank(
    uvloop_server: tuple[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = uvloop_server
    rows = _rows([*QUICK_CELL, *CLIENT, "--target", url], tmp_path, capsys)
    _check(rows, url, cpu=False)
    csv_text = next(tmp_path.rglob("*.csv")).read_text()
    assert ",," in csv_text  # the blank CPU fields


def test_target_nginx(
    nginx_server: tuple[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, pid = nginx_server
    rows = _rows([*QUICK_CELL, *CLIENT, "--target", url, "--target-pid", str(pid)],
                 tmp_path, capsys)  # fmt: skip
    _check(rows, url, cpu=True)


@pytest.mark.parametrize(
    "argv",
    [
        ["--target", "http://192.0.2.1:8080/"],
        ["--target", "http://example.com/"],
        ["--target", "http://127.0.0.1:1/", "--servers", "uvloop"],
        ["--target-pid", "1"],
    ],
)
def test_bad_targets_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*QUICK_CELL, *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert "loopback" in err or "does not apply" in err or "needs --target" in err


def test_unreachable_target_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*QUICK_CELL, "--target", "http://127.0.0.1:1/"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "did not answer" in err
