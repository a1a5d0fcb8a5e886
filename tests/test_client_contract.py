"""benchmarks.clients.contract: each client flag written and read back in one module, validated
once (the model is servers/options.py: to_argv and parse_args side by side)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from benchmarks.clients.contract import (
    PYPERF_MODULES,
    SEQUENTIAL_CLIENTS,
    ClientConfig,
    ClientKind,
    LocustSettings,
    Mode,
    add_locust_arguments,
    parse_pyperf_args,
)
from benchmarks.common import UsageError

PYPERF_KINDS = [k for k in ClientKind if not k.is_locust]


def _config(tmp_path: Path, **overrides: Any) -> ClientConfig:
    fields: dict[str, Any] = dict(
        kind=ClientKind.PYPERF_CONCURRENT_RAW, url="https://[::1]:8443", mode=Mode.UNPOOLED,
        concurrency=7, duration_s=1.25, output=tmp_path / "r.json", warmup_s=0.5,
        path="/bytes/100", ca_path=None,
    )  # fmt: skip
    return ClientConfig(**{**fields, **overrides})


@pytest.mark.parametrize("kind", PYPERF_KINDS)
def test_a_pyperf_command_reads_back_as_the_same_config(tmp_path: Path, kind: ClientKind) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    concurrency = kind.connections(7)  # the sequential clients take no --concurrency
    config = _config(tmp_path, kind=kind, ca_path=ca, concurrency=concurrency)
    argv = config.command()
    assert argv[1:3] == ["-m", PYPERF_MODULES[kind]]
    parsed, parts_dir, rest = parse_pyperf_args(PYPERF_MODULES[kind], [*argv[3:], "--worker"])
    assert parsed == config and parts_dir is None and rest == ["--worker"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"concurrency": 0}, "--concurrency must be between 1 and 10000, got 0"),
        ({"duration_s": float("nan")}, "--duration must be a finite number > 0, got nan"),
        ({"warmup_s": -1.0}, "--warmup must be a finite number >= 0, got -1"),
        ({"path": "x"}, "--path must start with '/', got 'x'"),
        ({"url": "ftp://h/"}, "--url: URL must start with http:// or https://"),
        ({"ca_path": Path("/nonexistent/ca.pem")}, "--ca: no such file: /nonexistent/ca.pem"),
        ({"workers": 0}, "--workers must be between 1 and 64, got 0"),
    ],
)
def test_a_config_that_cannot_run_is_refused(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError, match=f"^{message}"):
        _config(tmp_path, **overrides)


class _LocustLikeParser(argparse.ArgumentParser):
    """Locust's parser takes `include_in_web_ui`; plain argparse does not (no gevent here)."""

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("include_in_web_ui", None)
        return super().add_argument(*args, **kwargs)


def _read_back(argv: list[str]) -> LocustSettings:
    parser = _LocustLikeParser()
    add_locust_arguments(parser)
    return LocustSettings.from_options(parser.parse_args(argv))


def test_the_locust_flags_read_back(tmp_path: Path) -> None:
    settings = LocustSettings(
        output=tmp_path / "r.json", warmup_s=0.5, duration_s=2.0 / 3, path="/x", think_time_s=6
    )
    assert _read_back(settings.to_argv()) == settings
    assert _read_back([]) == LocustSettings()
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert LocustSettings(ca=ca).to_argv() == ["--kab-ca", str(ca)]


def test_the_harness_locust_command_carries_the_settings(tmp_path: Path) -> None:
    config = _config(tmp_path, kind=ClientKind.LOCUST_FASTHTTP, duration_s=2.0 / 3)
    argv = config.command()
    flags = argv[argv.index("--kab-output") : argv.index(argv[-1])]
    assert _read_back(flags) == LocustSettings(
        output=config.output, warmup_s=0.5, duration_s=2.0 / 3, path="/bytes/100"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--kab-warmup", "nan"], "--kab-warmup must be a finite number >= 0, got nan"),
        (["--kab-think-time", "-1"], "--kab-think-time must be a finite number >= 0, got -1"),
        (["--kab-path", "x"], "--kab-path must start with '/', got 'x'"),
        (["--kab-ca", "/nonexistent"], "--kab-ca: no such file: /nonexistent"),
    ],
)
def test_bad_locust_flags_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=f"^{message}$"):
        _read_back(argv)


@pytest.mark.parametrize("kind", PYPERF_KINDS)
def test_insecure_reaches_every_pyperf_client_and_reads_back(
    tmp_path: Path, kind: ClientKind
) -> None:
    concurrency = 1 if kind in SEQUENTIAL_CLIENTS else 7
    config = _config(tmp_path, kind=kind, insecure=True, concurrency=concurrency)
    argv = config.command()
    assert "--insecure" in argv
    parsed, _, _ = parse_pyperf_args(PYPERF_MODULES[kind], argv[3:])
    assert parsed == config and parsed.insecure


def test_insecure_reaches_both_locust_clients(tmp_path: Path) -> None:
    for kind in (ClientKind.LOCUST_FASTHTTP, ClientKind.LOCUST_REQUESTS):
        argv = _config(tmp_path, kind=kind, insecure=True).command()
        flags = argv[argv.index("--kab-output") : argv.index(argv[-1])]
        assert _read_back(flags).insecure, kind
    assert LocustSettings(insecure=True).to_argv() == ["--kab-insecure"]


def test_a_ca_and_insecure_together_are_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(UsageError, match="^--ca and --insecure: give one"):
        _config(tmp_path, ca_path=ca, insecure=True)
    with pytest.raises(UsageError, match="^--kab-ca and --kab-insecure: give one"):
        LocustSettings(ca=ca, insecure=True)
