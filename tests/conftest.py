"""Fixtures for the server tests: one pool of server processes per implementation.

`server_name` is a module-scoped parameter, so pytest runs a module's tests of one implementation
together and each `pool` (stdlib, then aiohttp, then uvloop) is stopped before the next starts.
Module scope, not session: when a module ends, none of its server processes is left running
(other tests in this directory check that the test process has no stray children).
A conformance test whose case id a server lists in its `DEVIATIONS` is marked xfail (strict) with
the server's reason; a key `CASE[subcase]` marks only the test parametrised with that `subcase`.
Nothing is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.server_pool import SERVER_NAMES, Server, ServerPool, case_id_of, load_deviations
from tests.wire_client import RawConnection


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deviations = {name: load_deviations(name) or {} for name in SERVER_NAMES}
    for item in items:
        callspec = getattr(item, "callspec", None)  # only parametrized items have one
        if callspec is None:
            continue
        name = callspec.params.get("server_name")
        case = case_id_of(getattr(item, "originalname", item.name))
        if name is None or case is None:
            continue
        subcase = callspec.params.get("subcase")
        key = case if subcase is None else f"{case}[{subcase}]"
        reason = deviations[name].get(case) or deviations[name].get(key)
        if reason:
            item.add_marker(
                pytest.mark.xfail(reason=f"{name} deviation {key}: {reason}", strict=True)
            )


@pytest.fixture(scope="module", params=SERVER_NAMES)
def server_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def pool(server_name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    servers = ServerPool(server_name, tmp_path_factory.mktemp(f"servers-{server_name}"))
    yield servers
    servers.close()


@pytest.fixture
def server(pool: ServerPool) -> Server:
    """The suite configuration: T = 1 s, N = 3, H = 1 s, plain HTTP."""
    return pool.get()


@pytest.fixture
def tls_server(pool: ServerPool) -> Server:
    """The suite configuration over TLS (generated certificate, CA from the READY line)."""
    srv = pool.get(tls=True)
    assert srv.ca_path is not None and srv.ca_path.is_file(), "TLS server announced no ca= file"
    return srv


@pytest.fixture
def connect() -> Iterator[Callable[..., RawConnection]]:
    """`connect(server, **kw)`: a raw connection that is closed when the test ends."""
    opened: list[RawConnection] = []

    def _connect(srv: Server, **kwargs: object) -> RawConnection:
        conn = srv.connect(**kwargs)
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        conn.close()
