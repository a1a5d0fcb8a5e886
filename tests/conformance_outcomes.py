"""pytest plugin for `make conformance-report`: every conformance test's outcome as JSON.

Loaded with `-p tests.conformance_outcomes` by benchmarks/conformance (never by `make test`).
Each item is tagged with its server, case id, subcase and whether it is a TLS variant; the
controller (pytest-xdist's, or the only process) writes one record per test to the file named by
KAB_CONFORMANCE_OUTCOMES: outcome (passed, failed, xfailed, error), the first line of the
failure, and the Keep-Alive headers a foreign server sent where the spec wants another
(tests/server_pool.HEADER_FINDINGS).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from tests import server_pool
from tests.server_pool import case_id_of

OUTPUT_ENV = "KAB_CONFORMANCE_OUTCOMES"
_WORKER = re.compile(r"^\[gw\d+\] ")
_records: dict[str, dict[str, Any]] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        case = case_id_of(getattr(item, "originalname", item.name))
        if case is None or "server_name" not in params:
            continue
        item.user_properties += [
            ("kab_server", params["server_name"]),
            ("kab_case", case),
            ("kab_subcase", str(params.get("subcase", ""))),
            ("kab_tls", "test_conformance_tls" in item.nodeid),
            ("kab_test", getattr(item, "originalname", item.name)),
        ]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    if call.when == "setup":
        server_pool.HEADER_FINDINGS.clear()
    outcome = yield
    report = outcome.get_result()
    if call.when == "call" and server_pool.HEADER_FINDINGS:
        notes = "; ".join(dict.fromkeys(server_pool.HEADER_FINDINGS))
        report.user_properties.append(("kab_header", notes))


def first_line(report: pytest.TestReport) -> str:
    """The assertion or pytest.fail message, one line."""
    text = report.longreprtext or ""
    lines = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    # pytest.fail(pytrace=False) under xdist: the message after the worker's "[gw0] linux" line.
    lines = lines or [
        line.strip() for line in text.splitlines() if line.strip() and not _WORKER.match(line)
    ]
    return (lines[0] if lines else "")[:240]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    props = dict(report.user_properties)
    if "kab_case" not in props:
        return
    record = _records.setdefault(
        report.nodeid,
        {
            "server": props["kab_server"],
            "case": props["kab_case"],
            "subcase": props["kab_subcase"],
            "tls": bool(props["kab_tls"]),
            "test": props["kab_test"],
            "outcome": "passed",
            "message": "",
            "header": "",
        },
    )
    if props.get("kab_header"):
        record["header"] = props["kab_header"]
    if report.when == "call" and hasattr(report, "wasxfail"):
        record["outcome"] = "xfailed"
        record["message"] = str(report.wasxfail)
    elif report.failed and record["outcome"] == "passed":
        record["outcome"] = "failed" if report.when == "call" else "error"
        record["message"] = first_line(report)


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get(OUTPUT_ENV)
    if not path or hasattr(session.config, "workerinput"):
        return  # an xdist worker: its reports reach the controller, which writes
    target = Path(path)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(list(_records.values()), indent=1))
    tmp.replace(target)
