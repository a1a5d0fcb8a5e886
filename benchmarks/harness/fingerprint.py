"""The machine and code a run measured: numbers are only comparable under the same fingerprint.

Collected once per run and copied into every row, so a CSV carried to another machine still says
where it came from. `host_id` is a hash (hostname plus /etc/machine-id) rather than the hostname:
stable across runs, says nothing about the network, and safe as a directory name.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from benchmarks.common import REPO_ROOT

PACKAGES = ("aiohttp", "uvloop", "httptools", "locust", "pyperf")


@dataclass(frozen=True)
class Fingerprint:
    host_id: str
    cpu_model: str
    cpu_count: int
    kernel: str
    python_version: str
    packages: str
    git_commit: str


def collect(repo: Path = REPO_ROOT) -> Fingerprint:
    return Fingerprint(
        host_id=host_id(),
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count() or 1,
        kernel=platform.release(),
        python_version=platform.python_version(),
        packages=package_versions(),
        git_commit=git_commit(repo),
    )


def host_id() -> str:
    try:
        machine = Path("/etc/machine-id").read_text().strip()
    except OSError:
        machine = ""
    return hashlib.sha256(f"{socket.gethostname()}\0{machine}".encode()).hexdigest()[:12]


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def package_versions(names: tuple[str, ...] = PACKAGES) -> str:
    parts = []
    for name in names:
        try:
            parts.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name}=missing")
    return ";".join(parts)


def git_commit(repo: Path = REPO_ROOT) -> str:
    """Short commit, `-dirty` when tracked or new files differ (results/ does not count)."""
    try:
        head = _git(repo, "rev-parse", "--short", "HEAD")
        status = _git(repo, "status", "--porcelain", "--", ".", ":(exclude)results")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if status else head


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()
