"""Human and JSON output of one examination; both are built from the same values."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from typing import Any

from benchmarks.doctor.probes import Findings
from benchmarks.doctor.target import Target
from benchmarks.doctor.tlsprobe import TlsFacts
from benchmarks.doctor.verdicts import ServerIdle, Verdict

SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class Report:
    target: Target
    settings: dict[str, float | int]
    findings: Findings
    tls: TlsFacts | None
    tls_error: str | None
    server: ServerIdle
    verdicts: list[Verdict]
    notes: list[str]
    elapsed_s: float


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    return value


def to_json(report: Report) -> dict[str, Any]:
    """`idle_timeout_s`, `max_requests`, `advertised` and `verdicts` at the top level."""
    f = report.findings
    idle = f.idle
    return {
        "schema": SCHEMA,
        "url": report.target.url,
        "address": report.target.peer,
        "settings": report.settings,
        "idle_timeout_s": report.server.timeout_s,
        "idle_timeout_at_least_s": report.server.at_least_s,
        "max_requests": f.max_requests.limit if f.max_requests else None,
        "advertised": _plain(f.advertised),
        "persistence": _plain(f.persistence),
        "idle": None if idle is None else {**_plain(idle), "spread_s": idle.spread_s},
        "active_check": _plain(f.active),
        "max_requests_detail": _plain(f.max_requests),
        "pipelining": _plain(f.pipelining),
        "closing": _plain(f.closing),
        "header_deadline": _plain(f.header_deadline),
        "tls": _plain(report.tls),
        "tls_error": report.tls_error,
        "verdicts": [_plain(v) for v in report.verdicts],
        "notes": report.notes,
        "errors": f.errors,
        "elapsed_s": round(report.elapsed_s, 1),
    }


def render_json(report: Report) -> str:
    return json.dumps(to_json(report), indent=2)


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def _row(label: str, text: str) -> str:
    return f"  {label:<28} {text}"


def _idle_lines(report: Report) -> list[str]:
    f, server = report.findings, report.server
    idle = f.idle
    if idle is None:
        return [_row("idle timeout", f"not measured ({f.errors.get('idle', '?')})")]
    if not idle.kept_alive:
        return [_row("idle timeout", "n/a: every response closed the connection")]
    samples = ", ".join(
        f"{s.after_s:.3f} s ({s.close})" if s.after_s is not None else "still open"
        for s in idle.samples
    )
    if idle.timeout_s is not None:
        head = f"{idle.timeout_s:.2f} s"
    else:
        head = f"at least {report.settings['max_idle_s']:g} s (no close seen)"
    if server.timeout_s is None and idle.timeout_s is not None:
        head += " (not trusted: see notes)"
    lines = [_row("idle timeout", head), _row("  per connection", samples)]
    if f.active is not None:
        a = f.active
        lines.append(
            _row(
                "  active check",
                f"after {a.under_s:g} s idle: {a.under}; after {a.over_s:g} s: {a.over}",
            )
        )
    if idle.beyond is not None:
        lines.append(_row("  request at --max-idle", idle.beyond))
    return lines


def _probe_lines(report: Report) -> list[str]:
    f = report.findings
    lines = []
    mr = f.max_requests
    if mr is None:
        lines.append(
            _row("max requests/connection", f"not measured ({f.errors.get('max_requests')})")
        )
    elif mr.limit is None:
        lines.append(
            _row(
                "max requests/connection",
                f"none seen: all {mr.sent} requests answered on one connection",
            )
        )
    else:
        said = "said Connection: close" if mr.announced else "no Connection: close"
        lines.append(_row("max requests/connection", f"{mr.limit} ({said}; then {mr.close_after})"))
    p = f.pipelining
    if p is not None:
        text = f"{_yes(p.in_order)}: {p.answered} of {p.sent} answered (GET, HEAD, GET), {p.detail}"
        lines.append(_row("pipelining in order", text))
    c = f.closing
    if c is not None:
        lines.append(_row("close with input pending", c.detail))
    hd = f.header_deadline
    if hd is not None:
        if hd.tolerated_s is not None:
            sent = f", sent {hd.response!r}" if hd.response else ""
            text = f"{hd.tolerated_s:.2f} s (then {hd.close}{sent})"
        else:
            text = f"none seen in {hd.at_least_s:g} s"
        lines.append(_row("header deadline (trickle)", text))
    return lines


def _tls_lines(report: Report) -> list[str]:
    if not report.target.tls:
        return []
    if report.tls is None:
        return ["", "TLS", _row("error", report.tls_error or "?")]
    t = report.tls
    resumed = "no"
    if t.resumed:
        resumed = f"yes, handshake {t.resumed_handshake_ms:.2f} ms"
    ticket = _yes(t.ticket) + (f" (lifetime {t.ticket_lifetime_s} s)" if t.ticket else "")
    return [
        "",
        "TLS",
        _row("version, cipher", f"{t.version}, {t.cipher}"),
        _row("ALPN (offered h2, http/1.1)", t.alpn or "none"),
        _row("full handshake", f"{t.handshake_ms:.2f} ms (TCP connect excluded)"),
        _row("session ticket", ticket),
        _row("session resumed", resumed),
    ]


WIDTH = 100


def _wrapped(text: str, indent: str, later: str | None = None) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=later or indent)


def _verdict_lines(report: Report) -> list[str]:
    server = report.server
    if not server.kept_alive:
        return ["", "Clients and load balancers: n/a, the server keeps no connection alive"]
    if server.timeout_s is not None:
        against = f"the server's measured {server.timeout_s:.2f} s"
    elif server.at_least_s is not None:
        against = f"the server's at least {server.at_least_s:g} s"
    else:
        against = "an unknown server idle timeout"
    lines = ["", f"Clients and load balancers (default idle limit vs {against})"]
    for v in report.verdicts:
        default = "no idle limit" if v.default_idle_s is None else f"{v.default_idle_s:g} s"
        lines.append(f"  {v.status.value:<8} {v.peer} ({v.kind}, {default})")
        lines += _wrapped(v.why, "           ")
        if v.fix:
            lines += _wrapped(f"-> {v.fix}", "           ", "              ")
    return lines


def render_human(report: Report) -> str:
    f = report.findings
    adv, per = f.advertised, f.persistence
    lines = [
        f"keep-alive doctor: {report.target.url} ({report.target.peer}), {report.elapsed_s:.0f} s",
        "",
        "Measured",
        _row("keep-alive, HTTP/1.1", f"{_yes(per.http11)}: {per.http11_detail}"),
        _row("keep-alive, HTTP/1.0", f"{_yes(per.http10)}: {per.http10_detail}"),
        *_idle_lines(report),
        *_probe_lines(report),
        "",
        "Advertised (first response)",
        _row("status, Server", f"{adv.status}, {adv.server or '-'}"),
        _row("Connection", adv.connection or "(none)"),
        _row("Keep-Alive", adv.keep_alive or "(none)"),
        _row("HTTP/1.0 Connection", adv.http10_connection or "(none)"),
        *_tls_lines(report),
        *_verdict_lines(report),
    ]
    if report.notes:
        lines += ["", "Notes"]
        for note in report.notes:
            lines += _wrapped(f"- {note}", "  ", "    ")
    return "\n".join(lines)
