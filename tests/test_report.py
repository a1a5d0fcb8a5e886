"""report: every plot is written, non-empty and a PNG, from small hand-made runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.analysis import plots as report
from tests.rowfactory import row, write

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_rows(run: int, factor: float) -> list:
    rows = []
    for server, rps in (("uvloop", 90_000.0), ("stdlib", 1_100.0)):
        for client in ("pyperf-concurrent-raw", "locust-fasthttp"):
            for mode, share in (("pooled", 1.0), ("unpooled", 0.2)):
                for rep in (1, 2):
                    rows.append(row(
                        run_id=f"run{run}", started_utc=f"2026-01-0{run + 1}T10:00:00Z",
                        git_commit=f"c{run}", server=server, client=client, mode=mode,
                        repetition=rep, throughput_rps=rps * share * factor * (1 + rep / 100),
                        connections_opened=50 if mode == "pooled" else 5000,
                        time_wait_sockets=0 if mode == "pooled" else 4500,
                        client_bound=int(client.startswith("locust") and mode == "pooled"),
                        valid=int(server != "stdlib" or mode != "unpooled"),
                    ))  # fmt: skip
    return rows


def test_report_writes_non_empty_pngs(tmp_path, capsys):
    csvs = [write(tmp_path / f"run{i}.csv", run_rows(i, f)) for i, f in enumerate((1.0, 0.8))]
    out = tmp_path / "plots"
    assert report.main([*map(str, csvs), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"throughput.png", "latency.png", "server_cpu.png", "connections.png"} <= names
    assert "trend_throughput_rps.png" in names
    for png in out.iterdir():
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, png.name
    assert len(capsys.readouterr().out.splitlines()) == len(names)


def test_snapshot_defaults_to_the_newest_run():
    runs = report.runs_by_time(run_rows(1, 1.0) + run_rows(0, 1.0))
    assert list(runs) == ["run0", "run1"]


def test_default_inputs_skip_plots_and_artifacts(tmp_path):
    host = tmp_path / "host"
    write(host / "20260101T000000Z-abc.csv", [row()])
    (host / "20260101T000000Z-abc").mkdir()
    (host / "20260101T000000Z-abc" / "extra.csv").write_text("x\n")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "data.csv").write_text("x\n")
    assert report.default_inputs(tmp_path) == [host / "20260101T000000Z-abc.csv"]


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    assert report.main([str(tmp_path / "missing.csv"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read" in err
    good = write(tmp_path / "good.csv", [row()])
    assert report.main([str(good), "--out", str(tmp_path / "p"), "--run", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert not Path(tmp_path / "p").exists()


def test_non_utf8_input_is_a_one_line_error(tmp_path, capsys):
    junk = tmp_path / "junk.csv"
    junk.write_bytes(b"\xff\xfe\x00s\x00c\x00h")
    assert report.main([str(junk), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not UTF-8 text" in err and "Traceback" not in err


def test_window_bands_follow_compares_tolerance():
    bands = report.window_bands([5.0, 4.9, 5.6, 1.0, 1.1, 9.0])
    assert bands[4.9] == bands[5.0] == bands[5.6] == 5.0  # 5.6 / 4.9 = 1.14: one band
    assert bands[1.0] == bands[1.1] == pytest.approx(1.05)
    assert bands[9.0] == 9.0


def _trend_rows(run: int, host: str, duration: float) -> list:
    return [
        row(run_id=f"run{run}-{host}", started_utc=f"2026-01-0{run + 1}T10:00:00Z",
            host_id=host, duration_s=duration, repetition=rep)
        for rep in (1, 2)
    ]  # fmt: skip


def test_trend_series_split_by_host_and_window():
    rows = (
        _trend_rows(0, "hostA", 5.0) + _trend_rows(1, "hostA", 5.1)  # one series
        + _trend_rows(2, "hostA", 1.0)  # a QUICK run: a series of its own
        + _trend_rows(3, "hostB", 5.0)  # another machine: its own series
    )  # fmt: skip
    series = report.trend_series(report.runs_by_time(rows), "throughput_rps")
    by_key = {(host, band): [x for x, _, _ in points] for (host, band, _), points in series.items()}
    assert by_key == {("hostA", 5.05): [0, 1], ("hostA", 1.0): [2], ("hostB", 5.0): [3]}


def test_bar_legend_sits_above_the_axes_not_on_a_bar():
    fig = report.per_client_figure(run_rows(0, 1.0), "t", [("throughput_rps", "req/s", False)])
    assert len(fig.legends) == 1
    assert all(ax.get_legend() is None for ax in fig.axes)
    fig.canvas.draw()
    legend_box = fig.legends[0].get_window_extent()
    top_of_axes = max(ax.get_window_extent().y1 for ax in fig.axes)
    assert legend_box.y0 >= top_of_axes  # above every panel (and so above every bar)


def test_trend_axis_says_what_x_is():
    fig = report.trend_figure(report.runs_by_time(run_rows(0, 1.0)), "throughput_rps", "req/s")
    assert "oldest → newest" in fig.axes[-1].get_xlabel()
