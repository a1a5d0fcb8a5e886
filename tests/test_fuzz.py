"""The fuzz command: a deterministic mutator, exact classification helpers, one-line errors, and a
short seeded run against the three real servers."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.fuzz import mutator
from benchmarks.fuzz.corpus import SEEDS
from benchmarks.fuzz.deviations import DEVIATIONS, explain, known_hang
from benchmarks.fuzz.exchange import statuses_in
from benchmarks.fuzz.mutator import MUTATIONS, make_case, split
from tests.server_pool import REPO

# The digest of the first 300 cases of seed 1. A reproducer in a report ("--seed 1 --case 137")
# only means something while the stream stays the same: a change to the corpus or the mutator
# that moves this digest breaks every recorded reproducer, so it must be deliberate.
SEED_1_DIGEST = "72e0a27459aa8db4faad143e88dafc8a91255a93262cf552423c80b7e3dfe619"


def _digest(seed: int, count: int) -> str:
    h = hashlib.sha256()
    for i in range(count):
        c = make_case(seed, i)
        h.update(repr((c.origin, c.mutations, c.parts)).encode())
    return h.hexdigest()


def test_the_stream_of_seed_1_is_pinned() -> None:
    assert _digest(1, 300) == SEED_1_DIGEST


def test_same_seed_same_cases_in_another_process() -> None:
    """str hashing is randomised per process; the stream must not depend on it."""
    code = "from tests.test_fuzz import _digest; print(_digest(1, 300))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip() == SEED_1_DIGEST


def test_a_case_does_not_depend_on_the_cases_before_it() -> None:
    later = make_case(7, 250)
    for i in range(250):
        make_case(7, i)
    assert make_case(7, 250) == later


def test_seeds_differ() -> None:
    assert _digest(1, 100) != _digest(2, 100)


def test_the_unmutated_seeds_come_first() -> None:
    for i, seed in enumerate(SEEDS):
        case = make_case(3, i)
        assert (case.origin, case.mutations, case.parts) == (seed.name, (), (seed.data,))
    assert make_case(3, len(SEEDS)).mutations != ()


def test_every_case_is_described_and_has_non_empty_writes() -> None:
    for i in range(len(SEEDS), 600):
        case = make_case(5, i)
        assert case.mutations and all(case.parts), case
        assert case.case_id == f"5:{i}"


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.__name__)
def test_each_mutation_is_deterministic_and_changes_its_input(mutation: mutator.Mutation) -> None:
    for seed in SEEDS:
        first = mutation(random.Random(f"t/{seed.name}"), seed.data)
        assert mutation(random.Random(f"t/{seed.name}"), seed.data) == first
        assert first[0] != seed.data or mutation is mutator.change_number, (seed.name, first)


def test_duplicate_header_repeats_one_whole_line() -> None:
    data = b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
    out, what = mutator.duplicate_header(random.Random(0), data)
    name = what.removeprefix("duplicate-header:")
    assert out.count(f"{name}:".encode()) == 2 and len(out) > len(data)
    assert out.startswith(b"GET / HTTP/1.1\r\n") and out.endswith(b"\r\n\r\n")


def test_change_number_touches_content_length_or_chunk_sizes_only() -> None:
    data = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
    for k in range(30):
        out, what = mutator.change_number(random.Random(k), data)
        assert what.startswith("content-length@"), what
        assert out.startswith(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: ")
        assert out.endswith(b"\r\n\r\nhello")
    chunked = (
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    whats = {mutator.change_number(random.Random(k), chunked)[1].split("@")[0] for k in range(30)}
    assert whats == {"chunk-size"}


def test_split_keeps_every_byte_in_order() -> None:
    data = SEEDS[0].data
    for k in range(50):
        parts = split(random.Random(k), data)
        assert b"".join(parts) == data and 2 <= len(parts) <= mutator.MAX_PARTS
        assert all(parts)


def test_statuses_are_read_from_status_lines_in_order() -> None:
    stream = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nxx"
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n"
        b"HTTP/2.0 505 HTTP Version Not Supported\r\nConnection: close\r\n\r\n"
    )
    assert statuses_in(stream) == (200, 404, 505)
    assert statuses_in(b"") == ()


PIPE_02 = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n"


def test_a_documented_deviation_explains_only_its_servers_and_inputs() -> None:
    answers = {"stdlib": (200,), "aiohttp": (400,), "uvloop": (200,)}
    assert explain(PIPE_02, answers) == ("aiohttp-PIPE-02",)
    # The same answers from another server, or to an input without close, are not explained.
    assert explain(PIPE_02, {"stdlib": (400,), "aiohttp": (200,), "uvloop": (200,)}) is None
    assert explain(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", answers) is None


def test_every_deviation_names_its_reference() -> None:
    names = [d.name for d in DEVIATIONS]
    assert len(names) == len(set(names))
    for d in DEVIATIONS:
        assert d.reference.startswith(("README", "issue 8", "new (fuzz)")), d
        assert d.servers <= {"stdlib", "aiohttp", "uvloop"}, d
    assert known_hang("uvloop", PIPE_02) is None


def _fuzz(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmarks", "fuzz", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ["--count", "0"],
        ["--count", "5", "--seconds", "1"],
        ["--servers", "nginx"],
        ["--seconds", "-1"],
        ["--deadline", "0"],
        ["--seed", "x"],
        ["--json", "/proc/fuzz.json", "--count", "1"],
    ],
    ids=" ".join,
)
def test_bad_flags_give_one_line_and_exit_2(args: list[str]) -> None:
    done = _fuzz(*args, timeout=60)
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and "error:" in done.stderr, done.stderr
    assert done.stdout == ""


def test_a_short_seeded_run_finds_nothing_unexplained(tmp_path: Path) -> None:
    """150 cases of seed 1 against the three servers: no crash, hang or unrequested 500, and
    every disagreement explained by a named deviation (benchmarks/fuzz/deviations.py)."""
    out = tmp_path / "fuzz.json"
    done = _fuzz("--count", "150", "--seed", "1", "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["cases"] == 150 and not result["failed"], done.stdout
    assert result["counts"] == dict.fromkeys(
        ("crash", "hang", "unrequested-500", "disagreement"), 0
    ), done.stdout
    assert all(s["cases"] == 150 for s in result["servers"].values()), result["servers"]
    assert "verdict: ok" in done.stdout
