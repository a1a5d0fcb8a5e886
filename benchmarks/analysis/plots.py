"""`python -m benchmarks report [CSV ...] [--out DIR]`: PNG plots of what keep-alive buys.

Snapshot plots show the newest run (or `--run RUN_ID`): pooled vs unpooled throughput, latency
percentiles, server CPU per request, connections opened and TIME_WAIT sockets. Repetitions are
drawn as the median with a min-max whisker, because that is what compare decides on. Rows that
cannot be trusted stay visible but marked: client-bound bars hatched (throughput is a lower
bound), invalid or failed ones faded with an "x". Trend plots follow each cell across all runs
given, oldest to newest (evenly spaced by run, labelled with start time and commit), so a
regression shows where it entered. A trend series is one cell on one machine (host_id) with one
window length (within compare's 25% tolerance): numbers from another machine, or from 1 s QUICK
windows next to 5 s ones, start a series of their own instead of a fake step in a line.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

from servers.options import OneLineParser

matplotlib.use("Agg")  # before pyplot: no display on CI or over ssh
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from benchmarks.analysis.compare import window_of, windows_differ  # noqa: E402
from benchmarks.analysis.rounds import result_csvs  # noqa: E402
from benchmarks.clients.contract import REPO_ROOT  # noqa: E402
from benchmarks.records.keys import CellKey, group_by_cell, row_problem  # noqa: E402
from benchmarks.records.schema import ResultRow, SchemaError, read_rows  # noqa: E402

MODE_COLORS = {"pooled": "tab:blue", "unpooled": "tab:orange"}
PERCENTILES = (
    ("p50", "latency_p50_ms"),
    ("p90", "latency_p90_ms"),
    ("p99", "latency_p99_ms"),
    ("p99.9", "latency_p999_ms"),
)
TREND_METRICS = (
    ("throughput_rps", "throughput (req/s)"),
    ("server_cpu_us_per_req", "server CPU per request (us)"),
    ("latency_p99_ms", "p99 latency (ms)"),
)


def collect(paths: Sequence[Path]) -> list[ResultRow]:
    """Every row of every file; the first bad file stops the report (SchemaError, one line)."""
    rows: list[ResultRow] = []
    for path in paths:
        rows += read_rows(path)
    return rows


def default_inputs(results: Path) -> list[Path]:
    """Every run CSV under results/, recursively, skipping scratch, plots and artifacts."""
    return sorted(result_csvs(results))


def runs_by_time(rows: Sequence[ResultRow]) -> dict[str, list[ResultRow]]:
    """Rows per run_id, oldest run first (by its earliest started_utc; ISO 8601 sorts)."""
    runs: dict[str, list[ResultRow]] = defaultdict(list)
    for row in rows:
        runs[row.run_id].append(row)
    return dict(sorted(runs.items(), key=lambda kv: min(r.started_utc for r in kv[1])))


def _stats(rows: Sequence[ResultRow], column: str) -> tuple[float, float, float]:
    """(median, min, max) of a column: the bar and its whisker."""
    vals = [float(getattr(r, column)) for r in rows]
    return statistics.median(vals), min(vals), max(vals)


def _config_label(key: CellKey, varying: set[str]) -> str:
    """Server name plus only those config fields that vary in this run, so labels stay short."""
    short = {"concurrency": "c", "keepalive_timeout_s": "kt", "keepalive_max": "km", "tls": "tls"}
    extra = [f"{short[f]}={getattr(key, f):g}" for f in sorted(varying)]
    return " ".join([key.server, *extra])


def mode_bars(ax: plt.Axes, cells: dict[CellKey, list[ResultRow]], column: str, log: bool) -> None:
    """Grouped bars: x = server (and varying config), one bar per mode; one axes per client."""
    fields = ("concurrency", "keepalive_timeout_s", "keepalive_max", "tls")
    varying = {f for f in fields if len({getattr(k, f) for k in cells}) > 1}
    groups = sorted({_config_label(k, varying) for k in cells})
    modes = sorted({k.mode for k in cells})
    width = 0.8 / max(len(modes), 1)
    for j, mode in enumerate(modes):
        for key, rows in cells.items():
            if key.mode != mode:
                continue
            x = groups.index(_config_label(key, varying)) + (j - (len(modes) - 1) / 2) * width
            measured = [r for r in rows if r.status == "ok"] or rows  # a failed row's 0 is no value
            med, lo, hi = _stats(measured, column)
            problems = {p for p in map(row_problem, rows) if p}
            bad = any(not p.startswith("client") for p in problems)
            ax.bar(
                x,
                med,
                width,
                color=MODE_COLORS.get(mode, "grey"),
                alpha=0.35 if bad else 1,
                hatch="//" if "client-bound" in problems else None,
                edgecolor="black",
                yerr=[[med - lo], [hi - med]],
                capsize=3,
            )
            if bad:
                ax.plot(x, med, "kx", markersize=9)
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right", fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)


def bar_legend(fig: Figure, modes: Sequence[str], top_in: float) -> None:
    """One legend for the whole figure, above the axes: inside an axes it covers a bar."""
    handles: list[Artist] = [
        plt.Rectangle((0, 0), 1, 1, color=MODE_COLORS.get(m, "grey")) for m in modes
    ]
    handles += [
        plt.Rectangle((0, 0), 1, 1, fill=False, hatch="//"),
        plt.Line2D([], [], color="k", marker="x", linestyle=""),
    ]
    labels = [*modes, "client-bound (lower bound)", "invalid/failed"]
    y = 1 - 0.36 / top_in  # just under the suptitle, in figure coordinates
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, y), ncols=4, fontsize=7)


def per_client_figure(
    rows: Sequence[ResultRow], title: str, panels: Sequence[tuple[str, str, bool]]
) -> Figure:
    """One row of axes per client, one column per (column, y label, log scale) panel."""
    by_client: dict[str, dict[CellKey, list[ResultRow]]] = defaultdict(dict)
    for key, cell_rows in group_by_cell(rows).items():
        by_client[key.client][key] = cell_rows
    clients = sorted(by_client)
    fig, axes = plt.subplots(
        len(clients), len(panels), squeeze=False, figsize=(5.5 * len(panels), 3.6 * len(clients))
    )
    for i, client in enumerate(clients):
        for j, (column, ylabel, log) in enumerate(panels):
            ax = axes[i][j]
            mode_bars(ax, by_client[client], column, log)
            ax.set_title(f"{client}", fontsize=9)
            ax.set_ylabel(ylabel, fontsize=8)
    height = fig.get_figheight()
    fig.suptitle(title, fontsize=10)
    bar_legend(fig, sorted({k.mode for k in group_by_cell(rows)}), height)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.42 / height))  # room for title and legend
    return fig


def latency_figure(rows: Sequence[ResultRow], title: str) -> Figure:
    """Percentiles side by side per cell, one axes per client, log scale (unpooled tails are
    orders of magnitude above pooled ones); cells that cannot be trusted get a red "!"."""
    by_client: dict[str, dict[CellKey, list[ResultRow]]] = defaultdict(dict)
    for key, cell_rows in group_by_cell(rows).items():
        by_client[key.client][key] = cell_rows
    clients = sorted(by_client)
    widest = max(len(cells) for cells in by_client.values())
    fig, axes = plt.subplots(
        len(clients), 1, squeeze=False, figsize=(max(6.0, 1.1 * widest + 2), 3.8 * len(clients))
    )
    width = 0.8 / len(PERCENTILES)
    colors = plt.get_cmap("viridis")([0.1, 0.4, 0.7, 0.95])
    for ax, client in zip(axes[:, 0], clients, strict=True):
        cells = by_client[client]
        keys = sorted(cells, key=lambda k: (k.server, k.mode, k.concurrency, k.tls))
        for j, (name, column) in enumerate(PERCENTILES):
            meds = [_stats(cells[k], column)[0] for k in keys]
            xs = [i + (j - 1.5) * width for i in range(len(keys))]
            ax.bar(xs, meds, width, label=name, color=colors[j])
        for i, key in enumerate(keys):
            if any(map(row_problem, cells[key])):
                top = max(_stats(cells[key], c)[0] for _, c in PERCENTILES)
                ax.annotate("!", (i, top), ha="center", va="bottom", color="red", weight="bold")
        labels = [f"{k.server}\n{k.mode} c={k.concurrency}{' tls' if k.tls else ''}" for k in keys]
        ax.set_xticks(range(len(keys)), labels, fontsize=7)
        ax.set_yscale("log")
        ax.margins(y=0.15)
        ax.set_ylabel("latency (ms)", fontsize=8)
        ax.set_title(client, fontsize=9)
        ax.legend(fontsize=7, ncols=4)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"{title}\nmedian of repetitions; ! = client-bound, invalid or failed", fontsize=10
    )
    fig.tight_layout()
    return fig


SeriesKey = tuple[str, float, CellKey]  # host_id, window band (s), cell
Series = dict[SeriesKey, list[tuple[int, float, bool]]]  # (x, median, untrustworthy) points


def window_bands(windows: Iterable[float]) -> dict[float, float]:
    """Each window length mapped to its band's name: the median length in the band.

    A band starts at a length and takes every longer one that compare would still compare with
    it (within its window tolerance); the next length beyond that starts a new band.
    """
    members: dict[float, list[float]] = defaultdict(list)
    anchor: float | None = None
    for w in sorted(set(windows)):
        if anchor is None or windows_differ(anchor, w):
            anchor = w
        members[anchor].append(w)
    return {w: statistics.median(ws) for ws in members.values() for w in ws}


def trend_series(runs: dict[str, list[ResultRow]], column: str) -> Series:
    """(x, median, untrustworthy) per series: one cell on one host with one window band."""
    points = []
    for x, rid in enumerate(runs):
        for key, cell_rows in group_by_cell(runs[rid]).items():
            for host in sorted({r.host_id for r in cell_rows}):
                mine = [r for r in cell_rows if r.host_id == host]
                med = _stats(mine, column)[0]
                points.append(
                    (host, key, window_of(mine) or 0.0, (x, med, any(map(row_problem, mine))))
                )
    windows: dict[tuple[str, CellKey], list[float]] = defaultdict(list)
    for host, key, window, _ in points:
        windows[host, key].append(window)
    bands = {hk: window_bands(ws) for hk, ws in windows.items()}
    series: Series = defaultdict(list)
    for host, key, window, point in points:
        series[host, bands[host, key][window], key].append(point)
    return dict(series)


def _series_label(skey: SeriesKey, many_hosts: bool) -> str:
    """Server, mode and config of the cell, its window, and the host when there are several."""
    host, window, key = skey
    label = key.label().split("/", 2)[2].replace(key.mode, f"{key.server} {key.mode}", 1)
    return f"{label} {window:.2g} s" + (f" @{host[:8]}" if many_hosts else "")


def _plot_series(ax: plt.Axes, series: Series, servers: list[str], many_hosts: bool) -> None:
    """One client's series on one axes: colour = server, line style = mode, hollow = distrust."""
    palette = plt.get_cmap("tab10")
    for skey in sorted(series, key=lambda s: _series_label(s, True)):
        key = skey[2]
        xs, ys, bad = zip(*series[skey], strict=True)
        color = palette(servers.index(key.server) % 10)
        style = "-" if key.mode == "pooled" else "--"
        ax.plot(xs, ys, style, color=color, label=_series_label(skey, many_hosts))
        for x, y, b in zip(xs, ys, bad, strict=True):
            ax.plot(x, y, "o", color=color, markerfacecolor="white" if b else color)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)


def trend_figure(runs: dict[str, list[ResultRow]], column: str, ylabel: str) -> Figure:
    """Each series' median across runs, one axes per client; ticks carry start time and commit.

    A hollow marker is a run where the cell was client-bound, invalid or failed, so a dip there
    is not mistaken for a regression. x is the run's rank, not its time: runs hours or weeks
    apart are drawn evenly spaced, and the axis says so.
    """
    order = list(runs)
    series = trend_series(runs, column)
    clients = sorted({k.client for _, _, k in series})
    servers = sorted({k.server for _, _, k in series})
    many_hosts = len({h for h, _, _ in series}) > 1
    fig, axes = plt.subplots(
        len(clients),
        1,
        squeeze=False,
        sharex=True,
        figsize=(max(7.0, 1.2 * len(order) + 5), 3.6 * len(clients)),
    )
    for ax, client in zip(axes[:, 0], clients, strict=True):
        mine = {s: pts for s, pts in series.items() if s[2].client == client}
        _plot_series(ax, mine, servers, many_hosts)
        ax.set_ylabel(ylabel, fontsize=8)
        if column == "throughput_rps" or column.startswith("latency"):
            ax.set_yscale("log")
        ax.set_title(client, fontsize=9)
    ticks = [
        f"{min(r.started_utc for r in runs[rid])[:16]}\n{runs[rid][0].git_commit}" for rid in order
    ]
    bottom = axes[-1][0]
    bottom.set_xticks(range(len(order)), ticks, fontsize=7, rotation=20, ha="right")
    bottom.set_xlabel("run (oldest → newest, evenly spaced; start time UTC, commit)", fontsize=8)
    fig.suptitle(
        f"{ylabel} across {len(order)} run(s); hollow = client-bound/invalid/failed; "
        "a series = one cell, host and window length",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def write_plots(rows: Sequence[ResultRow], out: Path, run_id: str | None = None) -> list[Path]:
    """Render every plot into `out`; returns the files written."""
    runs = runs_by_time(rows)
    if not runs:
        return []
    chosen = run_id or next(reversed(runs))
    if chosen not in runs:
        raise SchemaError(f"no run {chosen!r} in the input")
    snap = runs[chosen]
    title = f"run {chosen} ({snap[0].git_commit}, {snap[0].cpu_model}, {snap[0].kernel})"
    figures = {
        "throughput.png": per_client_figure(snap, title, [("throughput_rps", "req/s", False)]),
        "latency.png": latency_figure(snap, title),
        "server_cpu.png": per_client_figure(
            snap, title, [("server_cpu_us_per_req", "server CPU us/request (log)", True)]
        ),
        "connections.png": per_client_figure(
            snap,
            title,
            [
                ("connections_opened", "connections opened (log)", True),
                ("time_wait_sockets", "TIME_WAIT sockets at end", False),
            ],
        ),
    }
    for column, ylabel in TREND_METRICS:
        figures[f"trend_{column}.png"] = trend_figure(runs, column, ylabel)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures.items():
        path = out / name
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    """The CLI: the PNG paths on stdout, exit 2 with one line on bad input."""
    parser = OneLineParser(
        prog="python -m benchmarks report", description="PNG plots from results CSVs."
    )
    parser.add_argument(
        "csv",
        nargs="*",
        type=Path,
        help="results CSVs (default: every CSV under results/, recursively)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "results" / "plots",
        help="output directory (default results/plots)",
    )
    parser.add_argument(
        "--run", metavar="RUN_ID", help="run for the snapshot plots (default: newest)"
    )
    args = parser.parse_args(argv)
    paths = args.csv or default_inputs(REPO_ROOT / "results")
    try:
        if not paths:
            raise SchemaError("no results CSVs found under results/; pass files explicitly")
        written = write_plots(collect(paths), args.out, args.run)
    except SchemaError as exc:
        sys.stderr.write(f"report: error: {exc}\n")
        return 2
    if not written:
        sys.stderr.write("report: error: the input has no result rows\n")
        return 2
    for path in written:
        print(path)
    return 0
