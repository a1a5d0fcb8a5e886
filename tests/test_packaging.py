"""What a clone installs: the lock file agrees with pyproject.toml and with this environment, and a
built wheel carries the data files the code opens beside its modules."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.server_pool import REPO

LOCK = REPO / "requirements.txt"
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", re.MULTILINE)
HASHED = re.compile(r"^([A-Za-z0-9_.-]+)==\S+ \\\n    --hash=sha256:[0-9a-f]{64}", re.MULTILINE)


def _pins() -> dict[str, str]:
    return {canonicalize_name(n): v for n, v in PIN.findall(LOCK.read_text(encoding="utf-8"))}


def _direct() -> list[Requirement]:
    """The dependencies pyproject.toml names: the main ones and the dev extra (`make install`)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = project["dependencies"] + project["optional-dependencies"]["dev"]
    return [Requirement(n) for n in names]


def test_every_dependency_is_pinned_within_its_range_with_hashes() -> None:
    """A dependency added to pyproject.toml without `make lock` fails here, not on a clone."""
    pins = _pins()
    for req in _direct():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.txt: run `make lock`"
        assert req.specifier.contains(pins[name]), f"{req.name}=={pins[name]} not {req.specifier}"
    hashed = {canonicalize_name(n) for n in HASHED.findall(LOCK.read_text(encoding="utf-8"))}
    assert set(pins) == hashed, f"pins without a hash: {sorted(set(pins) - hashed)}"


def test_this_environment_runs_the_locked_versions() -> None:
    """What the tests (and the fingerprint's `packages` column) see is what the lock says."""
    pins = _pins()
    for req in _direct():
        installed = importlib.metadata.version(req.name)
        assert installed == pins[canonicalize_name(req.name)], (
            f"{req.name} {installed} installed, the lock says {pins[canonicalize_name(req.name)]}"
            ": run `make install`"
        )


def test_a_built_wheel_ships_the_package_data(tmp_path: Path) -> None:
    """doctor's defaults.toml, the lab's charts.html and Node's server script are opened beside
    their modules."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for package in ("servers", "benchmarks", "locustfiles"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "benchmarks/doctor/defaults.toml", "benchmarks/ui/charts.html", "servers/node/server.mjs",
    } <= names  # fmt: skip
