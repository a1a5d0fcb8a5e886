"""KeepAlivePolicy without sockets: spec rules 1-3 as tables (header values, countdown, reasons)."""

from __future__ import annotations

import ssl

import pytest

from servers.policy import (
    CLOSE_HEADERS,
    CloseReason,
    Decision,
    KeepAlivePolicy,
    client_wants_persistence,
    connection_tokens,
    error_decision,
    handshake_close_reason,
)

H11 = (1, 1)
H10 = (1, 0)
NONE: frozenset[str] = frozenset()
KEEP = frozenset({"keep-alive"})
CLOSE = frozenset({"close"})


def keep(value: str) -> Decision:
    return Decision(True, (("Connection", "keep-alive"), ("Keep-Alive", value)), None)


def close(reason: CloseReason) -> Decision:
    return Decision(False, (("Connection", "close"),), reason)


# (T, N, request_number, version, tokens, handler_close) -> expected decision
DECIDE_TABLE = [
    pytest.param(1, 3, 1, H11, NONE, False, keep("timeout=1, max=2"), id="ka01-first"),
    pytest.param(1, 3, 2, H11, NONE, False, keep("timeout=1, max=1"), id="ka01-second"),
    pytest.param(1, 3, 3, H11, NONE, False, close(CloseReason.MAX_REACHED), id="max01-third"),
    pytest.param(1, 3, 4, H11, NONE, False, close(CloseReason.MAX_REACHED), id="beyond-max"),
    pytest.param(1, 3, 1, H11, CLOSE, False, close(CloseReason.CLIENT_REQUESTED), id="ka02"),
    pytest.param(1, 3, 1, H10, NONE, False, close(CloseReason.CLIENT_REQUESTED), id="ka03"),
    pytest.param(1, 3, 1, H10, KEEP, False, keep("timeout=1, max=2"), id="ka04-first"),
    pytest.param(1, 3, 2, H10, KEEP, False, keep("timeout=1, max=1"), id="ka04-second"),
    pytest.param(1, 3, 3, H10, KEEP, False, close(CloseReason.MAX_REACHED), id="ka04-third"),
    pytest.param(
        1, 3, 1, H11, KEEP | CLOSE, False, close(CloseReason.CLIENT_REQUESTED), id="ka05-both"
    ),
    pytest.param(
        1, 3, 1, H10, KEEP | CLOSE, False, close(CloseReason.CLIENT_REQUESTED), id="1.0-both"
    ),
    pytest.param(1, 3, 1, H11, KEEP, False, keep("timeout=1, max=2"), id="1.1-explicit-keep"),
    pytest.param(1, 3, 1, (1, 2), NONE, False, keep("timeout=1, max=2"), id="1.2-as-1.1"),
    pytest.param(1, 3, 1, H11, NONE, True, close(CloseReason.HANDLER), id="ka06-handler"),
    pytest.param(1, 3, 3, H11, NONE, True, close(CloseReason.HANDLER), id="handler-beats-max"),
    pytest.param(
        1, 3, 1, H11, CLOSE, True, close(CloseReason.CLIENT_REQUESTED), id="client-beats-handler"
    ),
    pytest.param(0, 100, 1, H11, NONE, False, close(CloseReason.KEEPALIVE_DISABLED), id="t0"),
    pytest.param(0, 100, 1, H10, KEEP, False, close(CloseReason.KEEPALIVE_DISABLED), id="t0-1.0"),
    pytest.param(
        0, 100, 1, H11, CLOSE, False, close(CloseReason.CLIENT_REQUESTED), id="t0-client-close"
    ),
    pytest.param(0, 100, 1, H11, NONE, True, close(CloseReason.KEEPALIVE_DISABLED), id="t0-hdl"),
    # N=1 means "no reuse": the policy reports it as keep-alive disabled, not as max reached.
    pytest.param(1, 1, 1, H11, NONE, False, close(CloseReason.KEEPALIVE_DISABLED), id="n1"),
    pytest.param(1, 2, 1, H11, NONE, False, keep("timeout=1, max=1"), id="max04-first"),
    pytest.param(1, 2, 2, H11, NONE, False, close(CloseReason.MAX_REACHED), id="max04-second"),
    pytest.param(1, 0, 1, H11, NONE, False, keep("timeout=1"), id="n0-first"),
    pytest.param(1, 0, 10_000, H11, NONE, False, keep("timeout=1"), id="n0-many"),
    pytest.param(1, 0, 5, H11, CLOSE, False, close(CloseReason.CLIENT_REQUESTED), id="n0-close"),
    pytest.param(5, 100, 1, H11, NONE, False, keep("timeout=5, max=99"), id="defaults"),
    pytest.param(2.5, 100, 99, H11, NONE, False, keep("timeout=2, max=1"), id="fractional-t"),
]


@pytest.mark.parametrize(("t", "n", "k", "version", "tokens", "handler", "expected"), DECIDE_TABLE)
def test_decide(
    t: float,
    n: int,
    k: int,
    version: tuple[int, int],
    tokens: frozenset[str],
    handler: bool,
    expected: Decision,
) -> None:
    assert KeepAlivePolicy(t, n).decide(k, version, tokens, handler_close=handler) == expected


@pytest.mark.parametrize("n", [2, 3, 5, 100])
def test_max_counts_down_like_apache_and_closes_on_the_nth(n: int) -> None:
    policy = KeepAlivePolicy(1, n)
    values = [policy.decide(k, H11, NONE) for k in range(1, n + 1)]
    assert [d.keep_alive for d in values] == [True] * (n - 1) + [False]
    assert [dict(d.headers)["Keep-Alive"] for d in values[:-1]] == [
        f"timeout=1, max={n - k}" for k in range(1, n)
    ]
    assert values[-1] == close(CloseReason.MAX_REACHED)


@pytest.mark.parametrize(
    ("t", "n", "k", "expected"),
    [
        (1, 3, 1, 2),
        (1, 3, 3, 0),
        (1, 3, 7, 0),
        (1, 1, 1, 0),
        (1, 0, 1, None),
        (1, 0, 10**6, None),
    ],
)
def test_remaining_after(t: float, n: int, k: int, expected: int | None) -> None:
    assert KeepAlivePolicy(t, n).remaining_after(k) == expected


@pytest.mark.parametrize(
    ("t", "n", "enabled"),
    [(1, 3, True), (1, 0, True), (1, 2, True), (1, 1, False), (0, 3, False), (0, 0, False)],
)
def test_enabled(t: float, n: int, enabled: bool) -> None:
    assert KeepAlivePolicy(t, n).enabled is enabled


@pytest.mark.parametrize(
    ("t", "n", "k", "value"),
    [
        (1, 3, 1, "timeout=1, max=2"),
        (1.0, 3, 2, "timeout=1, max=1"),
        (5, 100, 1, "timeout=5, max=99"),
        (30, 0, 1, "timeout=30"),
        (2.5, 10, 3, "timeout=2, max=7"),
    ],
)
def test_keep_alive_value(t: float, n: int, k: int, value: str) -> None:
    assert KeepAlivePolicy(t, n).keep_alive_value(k) == value


@pytest.mark.parametrize(
    ("values", "tokens"),
    [
        ([], set()),
        ([""], set()),
        (["close"], {"close"}),
        (["CLOSE"], {"close"}),
        (["Keep-Alive"], {"keep-alive"}),
        (["keep-alive, close"], {"keep-alive", "close"}),
        (["TE, close"], {"te", "close"}),
        (["  close  "], {"close"}),
        ([" , ,close ,"], {"close"}),
        (["keep-alive", "Close"], {"keep-alive", "close"}),  # two field lines
        (["closed"], {"closed"}),
        (["close-ish, x-close"], {"close-ish", "x-close"}),
        (["Upgrade,HTTP2-Settings"], {"upgrade", "http2-settings"}),
        (["\tclose\t"], {"close"}),
        (["close\xa0"], {"close\xa0"}),  # OWS is SP and HTAB only: NBSP is part of the token
    ],
)
def test_connection_tokens(values: list[str], tokens: set[str]) -> None:
    assert connection_tokens(values) == frozenset(tokens)


def test_connection_tokens_accepts_any_iterable() -> None:
    assert connection_tokens(v for v in ("a", "B, c")) == frozenset({"a", "b", "c"})


@pytest.mark.parametrize(
    ("version", "values", "persists"),
    [
        (H11, [], True),
        (H11, ["keep-alive"], True),
        (H11, ["close"], False),
        (H11, ["CLOSE"], False),
        (H11, ["keep-alive, close"], False),
        (H11, ["TE, close"], False),
        (H11, ["closed"], True),  # a different token, not `close`
        (H11, ["upgrade"], True),
        ((1, 2), [], True),
        (H10, [], False),
        (H10, ["Keep-Alive"], True),
        (H10, ["keep-alive, close"], False),
        (H10, ["keep-alived"], False),
        (H10, ["close"], False),
    ],
)
def test_client_wants_persistence(version: tuple[int, int], values: list[str], persists: bool):
    assert client_wants_persistence(version, connection_tokens(values)) is persists


def test_error_decision_closes_without_keep_alive() -> None:
    decision = error_decision()
    assert decision == Decision(False, CLOSE_HEADERS, CloseReason.ERROR)
    assert "Keep-Alive" not in dict(decision.headers)


def test_close_headers_never_carry_keep_alive() -> None:
    policy = KeepAlivePolicy(1, 3)
    for decision in (
        policy.decide(3, H11, NONE),
        policy.decide(1, H11, CLOSE),
        policy.decide(1, H10, NONE),
        policy.decide(1, H11, NONE, handler_close=True),
    ):
        assert decision.headers == CLOSE_HEADERS


def test_close_reason_values_are_the_counter_names() -> None:
    assert {r.value for r in CloseReason} == {
        "max_reached",
        "idle_timeout",
        "header_timeout",
        "client_requested",
        "client_closed",
        "keepalive_disabled",
        "handler",
        "error",
        "shutdown",
        "handshake_failed",
        "reclaimed",
    }


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TimeoutError(), CloseReason.HEADER_TIMEOUT),  # past H
        (ssl.SSLEOFError(), CloseReason.CLIENT_CLOSED),  # FIN inside the handshake
        (ConnectionResetError(), CloseReason.CLIENT_CLOSED),
        (ssl.SSLZeroReturnError(), CloseReason.CLIENT_CLOSED),
        (ssl.SSLError(1, "[SSL: HTTP_REQUEST] http request"), CloseReason.HANDSHAKE_FAILED),
        (ssl.SSLCertVerificationError(), CloseReason.HANDSHAKE_FAILED),
        (OSError(9, "Bad file descriptor"), CloseReason.ERROR),
    ],
    ids=lambda x: type(x).__name__ if isinstance(x, BaseException) else x.value,
)
def test_handshake_close_reason(exc: BaseException, reason: CloseReason) -> None:
    assert handshake_close_reason(exc) is reason
