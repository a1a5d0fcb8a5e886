"""`python -m benchmarks report [CSV ...] [--out DIR]`: PNG plots of what keep-alive buys.

Snapshot plots show the newest run (or `--run RUN_ID`): pooled vs unpooled throughput, latency
percentiles, server CPU per request, connections opened and TIME_WAIT sockets. Repetitions are
drawn as the median with a min-max whisker, because that is what compare decides on. Rows that
cannot be trusted stay visible but marked: client-bound bars hatched (throughput is a lower
bound), invalid or failed ones faded with an "x". Trend plots follow each cell across all runs
given, x = run start time, so a regression shows where it entered.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib

from servers.options import OneLineParser

matplotlib.use("Agg")  # before pyplot: no display on CI or over ssh
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from benchmarks.cells import CellKey, group_by_cell, row_problem  # noqa: E402
from benchmarks.clientspec import REPO_ROOT  # noqa: E402
from benchmarks.rounds import result_csvs  # noqa: E402
from benchmarks.schema import ResultRow, SchemaError, read_rows  # noqa: E402

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
    handles = [plt.Rectangle((0, 0), 1, 1, color=MODE_COLORS.get(m, "grey")) for m in modes]
    handles += [
        plt.Rectangle((0, 0), 1, 1, fill=False, hatch="//"),
        plt.Line2D([], [], color="k", marker="x", linestyle=""),
    ]
    ax.legend(handles, [*modes, "client-bound", "invalid/failed"], fontsize=7)
    ax.grid(axis="y", alpha=0.3)


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
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
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


def trend_figure(runs: dict[str, list[ResultRow]], column: str, ylabel: str) -> Figure:
    """Each cell's median across runs, one axes per client; x = run start, ticks carry the commit.

    Colour = server, line style = mode; a hollow marker is a run where the cell was client-bound,
    invalid or failed, so a dip there is not mistaken for a regression.
    """
    order = list(runs)
    starts = {rid: min(r.started_utc for r in rows) for rid, rows in runs.items()}
    commits = {rid: rows[0].git_commit for rid, rows in runs.items()}
    series: dict[CellKey, list[tuple[int, float, bool]]] = defaultdict(list)
    for x, rid in enumerate(order):
        for key, cell_rows in group_by_cell(runs[rid]).items():
            bad = any(map(row_problem, cell_rows))
            series[key].append((x, _stats(cell_rows, column)[0], bad))
    clients = sorted({k.client for k in series})
    servers = sorted({k.server for k in series})
    palette = plt.get_cmap("tab10")
    fig, axes = plt.subplots(
        len(clients),
        1,
        squeeze=False,
        sharex=True,
        figsize=(max(7.0, 1.2 * len(order) + 5), 3.6 * len(clients)),
    )
    for ax, client in zip(axes[:, 0], clients, strict=True):
        for key in sorted((k for k in series if k.client == client), key=CellKey.label):
            xs, ys, bad = zip(*series[key], strict=True)
            color = palette(servers.index(key.server) % 10)
            style = "-" if key.mode == "pooled" else "--"
            label = key.label().split("/", 2)[2].replace(f"{key.mode}", f"{key.server} {key.mode}")
            ax.plot(xs, ys, style, color=color, label=label)
            for x, y, b in zip(xs, ys, bad, strict=True):
                ax.plot(x, y, "o", color=color, markerfacecolor="white" if b else color)
        ax.set_ylabel(ylabel, fontsize=8)
        if column == "throughput_rps" or column.startswith("latency"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.set_title(client, fontsize=9)
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ticks = [f"{starts[r][:16]}\n{commits[r]}" for r in order]
    axes[-1][0].set_xticks(range(len(order)), ticks, fontsize=7, rotation=20, ha="right")
    fig.suptitle(
        f"{ylabel} across {len(order)} run(s); hollow = client-bound/invalid/failed", fontsize=10
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
