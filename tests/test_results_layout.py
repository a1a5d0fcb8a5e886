"""What a run leaves in results/ (issue 9): a CSV and one artifact bundle, logs only of cells that
went wrong; `python -m benchmarks pack` folds older runs' folders the same way, and the readers
(compare, report, bench-compare's CSV lookup) see the same runs before and after."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from benchmarks.analysis import compare, plots
from benchmarks.analysis.rounds import result_csvs
from benchmarks.records import pack
from benchmarks.records.layout import (
    BUNDLE_SUFFIX,
    BundleError,
    RunWriter,
    bundle_bytes,
    bundle_of,
    new_run_paths,
    read_bundle,
    remove_stale_work,
    run_artifacts,
    stamp_mtime,
)
from benchmarks.records.schema import ResultRow, read_rows, write_rows
from tests.rowfactory import row
from tests.server_pool import REPO

STAMP = "20260101T000000Z"
SLUGS = ("001-uvloop-pyperf-concurrent-raw-pooled-c16-kt5-km100-r1",
         "002-uvloop-pyperf-concurrent-raw-unpooled-c16-kt5-km100-r1")  # fmt: skip


def _cell_leftovers(folder: Path, slug: str) -> None:
    """What a pyperf cell leaves: its JSON, pyperf's JSON, two logs."""
    (folder / f"{slug}.json").write_text('{"histogram": "HISTFAAA"}')
    (folder / f"{slug}.json.pyperf.json").write_text("{}")
    (folder / f"{slug}.client.log").write_text("client says hi\n")
    (folder / f"{slug}.server.log").write_text("")


# --- the writer --------------------------------------------------------------------------------


def test_new_run_paths_never_reuse_a_name(tmp_path: Path) -> None:
    a = new_run_paths(tmp_path, "host1", STAMP, "abc")
    b = new_run_paths(tmp_path, "host1", STAMP, "abc")
    assert a.csv == tmp_path / "host1" / f"{STAMP}-abc.csv" and a.work.is_dir()
    assert a.bundle == tmp_path / "host1" / f"{STAMP}-abc{BUNDLE_SUFFIX}"
    assert b.csv.name == f"{STAMP}-abc-1.csv"
    (tmp_path / "host1" / f"{STAMP}-old").mkdir()  # an older run's folder takes its name too
    assert new_run_paths(tmp_path, "host1", STAMP, "old").csv.name == f"{STAMP}-old-1.csv"


def test_a_run_adds_a_csv_and_one_bundle_with_logs_only_of_bad_cells(tmp_path: Path) -> None:
    paths = new_run_paths(tmp_path, "host1", STAMP, "abc")
    writer = RunWriter(paths)
    for slug in SLUGS:
        _cell_leftovers(paths.work, slug)
    writer.add(row(repetition=1), SLUGS[0])
    assert len(read_rows(paths.csv)) == 1
    assert sorted(read_bundle(paths.bundle)) == [f"{SLUGS[0]}.json", f"{SLUGS[0]}.json.pyperf.json"]
    writer.add(row(repetition=2, mode="unpooled", status="ok", valid=0), SLUGS[1])
    assert [r.valid for r in read_rows(paths.csv)] == [1, 0]
    members = read_bundle(paths.bundle)
    assert sorted(members) == sorted(
        [f"{SLUGS[0]}.json", f"{SLUGS[0]}.json.pyperf.json"]
        + [f"{SLUGS[1]}{s}" for s in (".json", ".json.pyperf.json", ".client.log", ".server.log")]
    )
    assert members[f"{SLUGS[1]}.client.log"] == b"client says hi\n"
    assert [p.name for p in paths.work.iterdir()] == ["pid"]  # moved into the bundle
    assert writer.close() and not paths.work.exists()
    assert {p.name for p in paths.csv.parent.iterdir()} == {paths.csv.name, paths.bundle.name}
    with tarfile.open(paths.bundle) as tar:  # `tar -xzf` beside the CSV gives the old folder
        assert {m.name.split("/")[0] for m in tar} == {paths.name}
        assert all(m.mode == 0o644 and m.mtime == stamp_mtime(paths.name) for m in tar)


def test_a_failed_cell_keeps_its_logs(tmp_path: Path) -> None:
    paths = new_run_paths(tmp_path, "host1", STAMP, "abc")
    _cell_leftovers(paths.work, SLUGS[0])
    RunWriter(paths).add(row(status="server-died", valid=0), SLUGS[0])
    assert f"{SLUGS[0]}.server.log" in read_bundle(paths.bundle)


def test_a_failed_write_leaves_the_previous_files_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.records import layout

    paths = new_run_paths(tmp_path, "host1", STAMP, "abc")
    writer = RunWriter(paths)
    _cell_leftovers(paths.work, SLUGS[0])
    writer.add(row(), SLUGS[0])
    before = paths.bundle.read_bytes(), paths.csv.read_bytes()

    def full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(layout, "write_bytes_atomic", full)
    _cell_leftovers(paths.work, SLUGS[1])
    with pytest.raises(OSError):
        writer.add(row(repetition=2), SLUGS[1])
    assert (paths.bundle.read_bytes(), paths.csv.read_bytes()) == before
    assert len(writer.rows) == 1
    assert not [p for p in paths.csv.parent.iterdir() if p.name.endswith(".tmp")]


def test_the_next_run_removes_the_working_folder_of_a_dead_one(tmp_path: Path) -> None:
    host = tmp_path / "host1"
    host.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale, alive, foreign = host / ".a.partial", host / ".b.partial", host / ".c.partial"
    for folder, pid in ((stale, dead.stdout.strip()), (alive, str(os.getppid())), (foreign, "")):
        folder.mkdir()
        (folder / "pid").write_text(pid)
    assert remove_stale_work(host) == [stale]
    assert alive.is_dir() and foreign.is_dir()


# --- the bundle format -------------------------------------------------------------------------


def test_bundles_are_reproducible_and_read_back(tmp_path: Path) -> None:
    """Same members, same bytes (packing again changes nothing in git), in any order."""
    members = {"b.json": b"{}", "a.client.log": b"x" * 1000}
    one = bundle_bytes("run", members, 1_700_000_000)
    assert one == bundle_bytes("run", dict(reversed(members.items())), 1_700_000_000)
    path = tmp_path / f"run{BUNDLE_SUFFIX}"
    path.write_bytes(one)
    assert read_bundle(path) == members
    assert stamp_mtime("20260101T000000Z-abc") == 1767225600 and stamp_mtime("noise") == 0


def test_read_bundle_refuses_a_foreign_file(tmp_path: Path) -> None:
    bad = tmp_path / f"x{BUNDLE_SUFFIX}"
    bad.write_bytes(b"not gzip")
    with pytest.raises(BundleError, match="not an artifact bundle"):
        read_bundle(bad)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("run/sub")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    bad.write_bytes(raw.getvalue())
    with pytest.raises(BundleError, match="unexpected member"):
        read_bundle(bad)


def test_run_artifacts_reads_either_layout(tmp_path: Path) -> None:
    csv_path = tmp_path / f"{STAMP}-abc.csv"
    write_rows(csv_path, [row()])
    folder = csv_path.with_suffix("")
    folder.mkdir()
    (folder / "001-x.json").write_bytes(b"old")
    assert run_artifacts(csv_path) == {"001-x.json": b"old"}
    bundle_of(csv_path).write_bytes(bundle_bytes(folder.name, {"001-x.json": b"packed"}))
    shutil.rmtree(folder)
    assert run_artifacts(csv_path) == {"001-x.json": b"packed"}


# --- pack: the committed runs, consolidated ----------------------------------------------------


def _old_run(host: Path, name: str, rows: list[ResultRow]) -> Path:
    """A run as written before issue 9: the CSV and a folder of 4 files per cell."""
    csv_path = host / f"{name}.csv"
    write_rows(csv_path, rows)
    csv_path.with_suffix("").mkdir()
    for slug in SLUGS[: len(rows)]:
        _cell_leftovers(csv_path.with_suffix(""), slug)
    return csv_path


def test_pack_folds_each_folder_into_one_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = tmp_path / "host1"
    host.mkdir()
    good = _old_run(host, f"{STAMP}-aaa", [row(), row(mode="unpooled", status="client-crashed")])
    folder = good.with_suffix("")
    originals = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert pack.main(["--results-dir", str(tmp_path)]) == 0
    assert {p.name for p in host.iterdir()} == {good.name, bundle_of(good).name}
    members = read_bundle(bundle_of(good))
    dropped = {f"{SLUGS[0]}.client.log", f"{SLUGS[0]}.server.log"}  # cell 1 ran fine
    assert members == {k: v for k, v in originals.items() if k not in dropped}
    out = capsys.readouterr().out
    assert "8 files -> " in out and "6 files, 2 logs of failed or invalid cells; 2 logs" in out
    first = bundle_of(good).read_bytes()
    assert pack.main(["--results-dir", str(tmp_path)]) == 0  # nothing left to do
    assert "nothing to pack" in capsys.readouterr().out and bundle_of(good).read_bytes() == first


def test_pack_leaves_an_odd_folder_alone_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = tmp_path / "host1"
    host.mkdir()
    odd = _old_run(host, f"{STAMP}-odd", [row()])
    (odd.with_suffix("") / ".001-x.json.parts.abc").mkdir()
    assert pack.main(["--results-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "left as it is" in err and odd.with_suffix("").is_dir()
    assert not bundle_of(odd).exists()


def test_pack_dry_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = tmp_path / "host1"
    host.mkdir()
    csv_path = _old_run(host, f"{STAMP}-aaa", [row()])
    assert pack.main(["--results-dir", str(tmp_path), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would pack ")
    assert csv_path.with_suffix("").is_dir() and not bundle_of(csv_path).exists()


def test_pack_bad_input_is_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "pack", "--results-dir", "/nonexistent"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == "python -m benchmarks pack: error: --results-dir /nonexistent: " \
        "not a directory\n"  # fmt: skip


def test_committed_runs_are_packed_and_every_one_is_still_read() -> None:
    """The repository's own results/: no run folder is left, every CSV has its bundle, and the
    readers list every run CSV (noise's rows and the bundles are not runs)."""
    results = REPO / "results"
    assert pack.run_folders(results) == []
    runs = sorted(result_csvs(results))
    assert runs == plots.default_inputs(results) and len(runs) >= 6
    for csv_path in runs:
        assert bundle_of(csv_path).is_file(), csv_path
        names = read_bundle(bundle_of(csv_path))
        rows = read_rows(csv_path)
        assert sum(n.endswith(".json") and ".pyperf." not in n for n in names) == len(rows)
    assert compare.main([str(runs[-2]), str(runs[-1]), "--noise", "none"]) in (0, 1)
