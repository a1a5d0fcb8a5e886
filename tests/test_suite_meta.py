"""The suite itself: every spec case has its test, and every server's DEVIATIONS is well-formed."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import conftest
from tests.server_pool import (
    CASE_IDS,
    REPO,
    SERVER_NAMES,
    ServerPool,
    case_id_of,
    load_deviations,
    module_path,
)

CONFORMANCE_MODULES = (
    "tests.test_conformance_persistence",
    "tests.test_conformance_timeouts",
    "tests.test_conformance_pipelining",
    "tests.test_conformance_errors",
    "tests.test_conformance_tls",
    "tests.test_conformance_slots",
)
# The normative spec is the repository's copy: every clone has it, so this check never skips.
SPEC = REPO / "docs" / "keepalive-spec.md"
OUTSIDE = "/".join(("shared", "spec"))  # where the spec lived before, outside the clone
SERVER_FIXTURES = {"server", "tls_server", "pool"}


def _conformance_tests() -> dict[str, list[str]]:
    """Case id -> names of the test functions that cover it."""
    found: dict[str, list[str]] = {}
    for module_name in CONFORMANCE_MODULES:
        module = importlib.import_module(module_name)
        for name, func in inspect.getmembers(module, inspect.isfunction):
            if func.__module__ != module_name or not name.startswith("test_"):
                continue
            case = case_id_of(name)
            assert case is not None, f"{module_name}.{name} is not named after a case id"
            params = set(inspect.signature(func).parameters)
            assert params & SERVER_FIXTURES, f"{name} is not parametrised over the servers"
            found.setdefault(case, []).append(f"{module_name}.{name}")
    return found


def test_every_spec_case_has_exactly_one_plain_test() -> None:
    found = _conformance_tests()
    assert sorted(found) == sorted(CASE_IDS), set(CASE_IDS) ^ set(found)
    for case, names in found.items():
        plain = [n for n in names if not n.startswith("tests.test_conformance_tls.")]
        assert len(plain) == 1, f"{case}: {plain}"


def test_tls_variants_cover_reuse_graceful_close_and_idle() -> None:
    found = _conformance_tests()
    tls = {c for c, names in found.items() for n in names if "test_conformance_tls" in n}
    assert {"KA-01", "MAX-01", "IDLE-01"} <= tls


@pytest.mark.parametrize(
    ("name", "case"),
    [("test_ka01_x", "KA-01"), ("test_idle05", "IDLE-05"), ("test_rob03_y", "ROB-03")]
    + [("test_ka011", None), ("test_other", None), ("test_client_reuses", None)],
)
def test_case_id_of(name: str, case: str | None) -> None:
    assert case_id_of(name) == case


def test_case_ids_match_the_spec() -> None:
    section = SPEC.read_text(encoding="utf-8").split("## Conformance cases", 1)[1]
    section = section.split("\n## ", 1)[0]
    ids = re.findall(r"^- ([A-Z]+-\d\d) ", section, re.MULTILINE)
    assert tuple(ids) == CASE_IDS


def test_spec_says_it_is_normative_and_code_cites_it() -> None:
    """The repository's copy is the one that counts, and nothing points outside the clone."""
    assert "This file is the normative spec" in SPEC.read_text(encoding="utf-8")[:400]
    cited = [
        p.relative_to(REPO)
        for folder in ("servers", "benchmarks", "tests")
        for p in sorted((REPO / folder).rglob("*.py"))
        if OUTSIDE in p.read_text(encoding="utf-8")
    ]
    assert cited == [], f"cite docs/keepalive-spec.md instead of {OUTSIDE} in {cited}"


def _module_facts(name: str) -> dict[str, object]:
    code = (
        "import importlib, json\n"
        f"m = importlib.import_module('servers.{name}_server')\n"
        "print(json.dumps({'deviations': getattr(m, 'DEVIATIONS', None), 'doc': m.__doc__,"
        " 'serve': callable(getattr(m, 'serve', None))}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"importing servers.{name}_server failed:\n{done.stderr[-1500:]}"
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("name", SERVER_NAMES)
def test_server_module_declares_its_deviations(name: str) -> None:
    path: Path = module_path(name)
    assert path.is_file(), f"servers/{name}_server.py does not exist (yet)"
    facts = _module_facts(name)
    assert facts["serve"], f"servers/{name}_server.py has no serve(runtime)"
    deviations = facts["deviations"]
    assert isinstance(deviations, dict), "module-level DEVIATIONS: dict[str, str] is missing"
    cases = {key.split("[", 1)[0] for key in deviations}  # `ERR-08[HTTP/2.0]`: one subcase
    assert cases <= set(CASE_IDS), f"unknown case ids {cases - set(CASE_IDS)}"
    for key, reason in deviations.items():
        assert isinstance(reason, str) and reason.strip(), f"{key}: empty reason"
        doc = facts["doc"]
        assert isinstance(doc, str) and key in doc, f"{key} is not documented in the docstring"
    # The suite reads DEVIATIONS without importing the server: both views must agree.
    assert (load_deviations(name) or {}) == deviations


def test_missing_server_module_fails_clearly(tmp_path: Path) -> None:
    pool = ServerPool("nosuch", tmp_path)
    with pytest.raises(pytest.fail.Exception, match=r"servers/nosuch_server\.py does not exist"):
        pool.get()
    with pytest.raises(pytest.fail.Exception, match="does not exist"):  # cached: fails fast
        pool.get()
    pool.close()


@dataclass
class _FakeItem:
    originalname: str
    params: dict[str, str]
    markers: list[pytest.MarkDecorator] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.originalname

    @property
    def callspec(self) -> SimpleNamespace:
        return SimpleNamespace(params=self.params)

    def add_marker(self, marker: pytest.MarkDecorator) -> None:
        self.markers.append(marker)


def test_deviation_becomes_strict_xfail(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {"uvloop": {"KA-01": "the library closes first"}, "stdlib": {}, "aiohttp": {}}
    monkeypatch.setattr(conftest, "load_deviations", table.get)
    items = [
        _FakeItem("test_ka01_two_requests", {"server_name": "uvloop"}),
        _FakeItem("test_ka01_tls_two", {"server_name": "uvloop"}),
        _FakeItem("test_ka01_two_requests", {"server_name": "stdlib"}),
        _FakeItem("test_ka02_close", {"server_name": "uvloop"}),
        _FakeItem("test_client_reuses_one_connection", {"server_name": "uvloop"}),
    ]
    conftest.pytest_collection_modifyitems(None, items)  # type: ignore[arg-type]
    marked = [[m.mark for m in item.markers] for item in items]
    assert [len(m) for m in marked] == [1, 1, 0, 0, 0]
    for (mark,) in marked[:2]:
        assert mark.name == "xfail" and mark.kwargs["strict"] is True
        assert mark.kwargs["reason"] == "uvloop deviation KA-01: the library closes first"
