"""The keep-alive policy shared by all three servers: pure decisions, no sockets.

Rules enforced here (numbers refer to docs/keepalive-spec.md, the normative spec):
- Rule 1: `Connection` is a case-insensitive, comma-separated token list; `close` anywhere ends
  the connection; HTTP/1.1 (and any later 1.x) persists by default; HTTP/1.0 only with
  `keep-alive`.
- Rule 2: a response that keeps the connection carries `Connection: keep-alive` and
  `Keep-Alive: timeout=T, max=R`, R counting down like Apache (after the k-th response,
  R = N - k); `, max=` is omitted when N is unlimited.
- Rule 3: the N-th response (nginx's `keepalive_requests`: exactly N), a response to `close`,
  HTTP/1.0 without keep-alive, protocol errors and T = 0 all carry `Connection: close` and no
  `Keep-Alive`.
- Rule 4: the linger limit of a graceful close (`LINGER_S`); the close itself is each server's
  (`stdlib_io.graceful_close` and `close_at_once`, `uvloop_protocol`), checked by KA-07.
- Rule 11: connection slots (`--max-connections`, `--reclaim-idle`) are `servers.slots`'; the
  close of a reclaimed idle connection is counted here as `reclaimed`.
"""

from __future__ import annotations

import enum
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

# Rule 4, graceful close: after our FIN, read and discard the client's input for at most this
# long before closing, so that unread pipelined bytes cannot turn the close into a reset.
LINGER_S = 2.0


class CloseReason(enum.StrEnum):
    """Why a connection ended; each is a counter on the control endpoint."""

    MAX_REACHED = "max_reached"  # the N-th response was sent
    IDLE_TIMEOUT = "idle_timeout"  # no new request within T after a response
    HEADER_TIMEOUT = "header_timeout"  # header section not complete within H (slowloris)
    CLIENT_REQUESTED = "client_requested"  # Connection: close, or HTTP/1.0 without keep-alive
    CLIENT_CLOSED = "client_closed"  # EOF or reset from the client between requests
    KEEPALIVE_DISABLED = "keepalive_disabled"  # T = 0 or N = 1: one request per connection
    HANDLER = "handler"  # the endpoint itself asked to close (/close)
    ERROR = "error"  # malformed request answered with an error status, or a socket error
    SHUTDOWN = "shutdown"  # the server is stopping
    # TLS only: the handshake failed (not TLS, a bad ClientHello, no common version or cipher,
    # an alert from the client). A handshake that outlasts H counts as header_timeout, one the
    # client ends (FIN or reset) as client_closed: see handshake_close_reason.
    HANDSHAKE_FAILED = "handshake_failed"
    # --reclaim-idle (rule 11): all --max-connections slots were taken and a connection waited
    # in the backlog, so this one, the longest idle between requests, was closed for it.
    RECLAIMED = "reclaimed"


def handshake_close_reason(exc: BaseException) -> CloseReason:
    """How a failed TLS handshake is counted, the same on the three servers: past H (the
    deadline that bounds the handshake too) `header_timeout`; ended by the client (EOF, a reset,
    close_notify) `client_closed`; refused by either side's TLS `handshake_failed`; any other
    socket error `error`."""
    if isinstance(exc, TimeoutError):
        return CloseReason.HEADER_TIMEOUT
    if isinstance(exc, (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return CloseReason.CLIENT_CLOSED
    if isinstance(exc, ssl.SSLError):
        return CloseReason.HANDSHAKE_FAILED
    return CloseReason.ERROR


def connection_tokens(values: Iterable[str]) -> frozenset[str]:
    """Lower-cased tokens of every `Connection` header field value (RFC 9110 §7.6.1), split at
    commas and stripped of SP and HTAB only: `close\xa0` (NBSP) is not `close`, for llhttp
    neither."""
    tokens: set[str] = set()
    for value in values:
        tokens.update(t.lower() for t in (t.strip(" \t") for t in value.split(",")) if t)
    return frozenset(tokens)


def client_wants_persistence(version: tuple[int, int], tokens: frozenset[str]) -> bool:
    """RFC 9112 §9.3: does the request allow the connection to stay open?"""
    if "close" in tokens:
        return False
    if version >= (1, 1):
        return True
    return "keep-alive" in tokens


@dataclass(frozen=True)
class Decision:
    """What to do after one response: keep the connection, and which headers say so."""

    keep_alive: bool
    headers: tuple[tuple[str, str], ...]
    close_reason: CloseReason | None


CLOSE_HEADERS: tuple[tuple[str, str], ...] = (("Connection", "close"),)


@dataclass(frozen=True)
class KeepAlivePolicy:
    """T (idle timeout, 0 = keep-alive off) and N (requests per connection, 0 = unlimited)."""

    timeout_s: float
    max_requests: int

    @property
    def enabled(self) -> bool:
        return self.timeout_s > 0 and self.max_requests != 1

    def remaining_after(self, request_number: int) -> int | None:
        """Requests still allowed after the `request_number`-th; None when unlimited."""
        if self.max_requests == 0:
            return None
        return max(self.max_requests - request_number, 0)

    def keep_alive_value(self, request_number: int) -> str:
        """The `Keep-Alive` header value sent with the `request_number`-th response."""
        # Whole seconds (RFC 2068, MDN), rounded down: a client never counts on more idle time
        # than the server gives.
        value = f"timeout={int(self.timeout_s)}"
        remaining = self.remaining_after(request_number)
        return value if remaining is None else f"{value}, max={remaining}"

    def decide(
        self,
        request_number: int,
        version: tuple[int, int],
        tokens: frozenset[str],
        *,
        handler_close: bool = False,
    ) -> Decision:
        """Decide for the `request_number`-th (1-based) response on a connection."""
        reason = self._close_reason(request_number, version, tokens, handler_close)
        if reason is not None:
            return Decision(False, CLOSE_HEADERS, reason)
        headers = (
            ("Connection", "keep-alive"),
            ("Keep-Alive", self.keep_alive_value(request_number)),
        )
        return Decision(True, headers, None)

    def _close_reason(
        self,
        request_number: int,
        version: tuple[int, int],
        tokens: frozenset[str],
        handler_close: bool,
    ) -> CloseReason | None:
        if not client_wants_persistence(version, tokens):
            return CloseReason.CLIENT_REQUESTED
        if not self.enabled:
            return CloseReason.KEEPALIVE_DISABLED
        if handler_close:
            return CloseReason.HANDLER
        if self.remaining_after(request_number) == 0:
            return CloseReason.MAX_REACHED
        return None


def error_decision() -> Decision:
    """Rule 9: every protocol error response closes the connection."""
    return Decision(False, CLOSE_HEADERS, CloseReason.ERROR)


def shutdown_decision() -> Decision:
    """The server is stopping: the request in hand is answered, and that response closes."""
    return Decision(False, CLOSE_HEADERS, CloseReason.SHUTDOWN)
