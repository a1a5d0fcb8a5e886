"""What the scenarios share: one-line errors, progress on stderr, the results CSV and PNG paths.

A scenario CSV is not a run CSV (`compare` and `report` do not read it): one row per
measurement, the fingerprint columns first, `schema_version` first of all, so a reader can
refuse a format it does not know.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import write_atomic
from benchmarks.harness.fingerprint import Fingerprint, collect
from benchmarks.net.line import DelayLine
from benchmarks.net.netns import NetError
from servers.launch import ServerStartError

SCENARIO_SCHEMA_VERSION = 1
FINGERPRINT_COLUMNS = ("host_id", "git_commit", "kernel", "cpu_model", "python_version")


class ScenarioError(RuntimeError):
    """A scenario cannot run (bad input, a missing tool); the message is one line."""


def progress(prog: str, text: str) -> None:
    """One line on stderr, so stdout stays the verdict's alone."""
    sys.stderr.write(f"{prog}: {text}\n")
    sys.stderr.flush()


Rows = list[dict[str, Any]]


def client_stdout(line: DelayLine | None, argv: Sequence[str], timeout_s: float, label: str) -> str:
    """Run a scenario's client process to its end, in the line's client namespace when there is
    a line; its stdout. A failure is one line: `label: the client's last stderr line`."""
    full = line.client_cmd(argv) if line else list(argv)
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise ScenarioError(f"{label}: {last}")
    return proc.stdout


def run_and_write(
    prog: str,
    output: Output,
    measure: Callable[[], Rows],
    figure: Callable[[Rows], Any],
    verdicts: Callable[[Rows], list[str]],
) -> int:
    """A scenario's last steps, the same for each: measure (Ctrl-C is 130, a failure one line
    and 2, nothing written), then the CSV and the plot beside it, the verdicts on stdout."""
    started = time.monotonic()
    try:
        rows = measure()
    except KeyboardInterrupt:
        progress(prog, "interrupted, everything stopped")
        return 130
    except (ScenarioError, NetError, ServerStartError, OSError, subprocess.TimeoutExpired) as exc:
        progress(prog, f"error: {exc}")
        return 2
    output.write_csv(rows)
    output.write_png(figure(rows))
    for line in verdicts(rows):
        print(line)
    progress(prog, f"wrote {output.csv} and {output.png} in {time.monotonic() - started:.0f} s")
    return 0


@dataclass(frozen=True)
class Output:
    """Where one scenario run writes: `results/<host_id>/<name>-<stamp>-<commit>.{csv,png}`."""

    csv: Path
    png: Path
    fingerprint: Fingerprint

    @classmethod
    def plan(cls, results_dir: Path, name: str) -> Output:
        fingerprint = collect()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        stem = results_dir / fingerprint.host_id / f"{name}-{stamp}-{fingerprint.git_commit}"
        return cls(stem.with_suffix(".csv"), stem.with_suffix(".png"), fingerprint)

    def write_csv(self, rows: Sequence[Mapping[str, Any]]) -> None:
        write_atomic(self.csv, to_csv(rows, self.fingerprint))

    def write_png(self, fig: Any) -> None:
        """Atomically too: rendered to memory, then written like the CSV."""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        write_atomic(self.png, buf.getvalue())


def to_csv(rows: Sequence[Mapping[str, Any]], fingerprint: Fingerprint) -> str:
    """`schema_version`, the fingerprint, then each row's own columns (the first row's order)."""
    fixed = {"schema_version": SCENARIO_SCHEMA_VERSION}
    fixed |= {name: getattr(fingerprint, name) for name in FINGERPRINT_COLUMNS}
    columns = [*fixed, *(rows[0].keys() if rows else [])]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**fixed, **row})
    return out.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a scenario CSV; ScenarioError when its schema version is not ours."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if row.get("schema_version") != str(SCENARIO_SCHEMA_VERSION):
            raise ScenarioError(f"{path}: unknown schema_version {row.get('schema_version')!r}")
    return rows


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display), imported only when plotting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
