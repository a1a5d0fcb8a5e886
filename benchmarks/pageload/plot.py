"""The page-load plot: load time against RTT, one panel per N (columns) and client (rows).

    python -m benchmarks pageload plot results/<host>/pageload-....csv [--out PNG]

One colour per (keep-alive setting, TLS); the measured median (over the repetitions, valid rows
only) solid with markers, the paper model of the same setting dashed in the same colour.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

from benchmarks.common import OneLineParser

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from benchmarks.pageload.report import cell_p50  # noqa: E402
from benchmarks.pageload.rows import PageLoadRow, RowsError, read_rows  # noqa: E402

PROG = "python -m benchmarks pageload plot"
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _setting(row: PageLoadRow) -> str:
    ka = "keep-alive off" if row.keepalive_timeout_s == 0 else (
        f"keep-alive {row.keepalive_timeout_s:g}s/{row.keepalive_max}"
    )  # fmt: skip
    return f"{ka}, {'TLS ' + row.tls if row.tls != 'none' else 'plain'}"


def plot_rows(rows: Sequence[PageLoadRow], out: Path) -> Path:
    clients = list(dict.fromkeys(r.client for r in rows))
    sizes = sorted({r.resources for r in rows})
    settings = sorted(
        dict.fromkeys(_setting(r) for r in rows),
        key=lambda s: ("off" in s, "TLS" in s, s),
    )
    colors = {s: COLORS[i % len(COLORS)] for i, s in enumerate(settings)}
    fig, axes = plt.subplots(
        len(clients), len(sizes), figsize=(5.2 * len(sizes), 3.8 * len(clients)), squeeze=False
    )
    for i, client in enumerate(clients):
        for j, n in enumerate(sizes):
            ax = axes[i][j]
            for setting in settings:
                cell = [r for r in rows if (r.client, r.resources) == (client, n)]
                cell = [r for r in cell if _setting(r) == setting]
                rtts = sorted({r.rtt_ms for r in cell})
                if not rtts:
                    continue
                measured = [cell_p50([r for r in cell if r.rtt_ms == x]) for x in rtts]
                model = [next(r.model_ms for r in cell if r.rtt_ms == x) for x in rtts]
                color = colors[setting]
                ax.plot(rtts, measured, "o-", color=color, label=setting)
                ax.plot(rtts, model, "--", color=color, alpha=0.7)
                if any(math.isnan(m) for m in measured):
                    ax.text(0.02, 0.9, "gaps: no valid row", transform=ax.transAxes, fontsize=8)
            ax.set_title(f"{client}, N = {n} resources")
            ax.set_xlabel("round-trip time (ms)")
            ax.set_ylabel("page load (ms)")
            ax.grid(alpha=0.3)
            ax.set_xlim(left=0)
            ax.set_ylim(bottom=0)
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles.append(Line2D([], [], color="grey", linestyle="--"))
    labels.append("model (same colour)")
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=9)
    server = ",".join(dict.fromkeys(r.server for r in rows))
    size = ",".join(str(b) for b in sorted({r.resource_bytes for r in rows}))
    fig.suptitle(f"Page load against round-trip time ({server} server, resources of {size} B)")
    fig.tight_layout(rect=(0, 0.08, 1, 0.96))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return out


def main(argv: Sequence[str]) -> int:
    p = OneLineParser(prog=PROG, description="plot a page-load CSV")
    p.add_argument("csv", type=Path)
    p.add_argument("--out", type=Path, default=None, help="default: the CSV's name, .png")
    args = p.parse_args(list(argv))
    try:
        rows = read_rows(args.csv)
    except RowsError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    if not rows:
        sys.stderr.write(f"{PROG}: error: {args.csv}: no rows\n")
        return 2
    print(plot_rows(rows, args.out or args.csv.with_suffix(".png")))
    return 0
