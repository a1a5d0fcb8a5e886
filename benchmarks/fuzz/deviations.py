"""Known differences between the reference servers, by name: the fuzzer reports a case they
explain as that deviation, not as a failure.

Each `Deviation` says which servers may answer differently (`servers`), on which inputs
(`matches`, a predicate over the bytes sent) and, where the input alone is too broad, with which
answers (`answers`, over each server's status sequence). `reference` points at the README row
(or issue item) that documents it. A disagreement is explained when, taking one group of
servers that agree as the reference, every other server is covered by a deviation that matches.

Every entry is a documented deviation with its row in the README's table of known deviations.
A disagreement that none explains is a finding: fix it, or document it there and here (issue 8
turned every former `TODO-...` entry into one or the other).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Statuses = tuple[int, ...]
Answers = Mapping[str, Statuses]
DISAGREEMENT, HANG = "disagreement", "hang"

_CLOSE = re.compile(rb"(?i)\r\nconnection:[^\r\n]*\bclose\b")
_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:[ \t]*([0-9]{1,9})[ \t]*\r\n")
# The fields aiohttp's parser allows once (its SINGLETON_HEADERS, aiohttp 3.14); Host and
# Content-Length are not listed: a second one is a 400 on all three servers.
_SINGLETONS = (
    b"content-location", b"content-range", b"content-type", b"etag", b"max-forwards",
    b"server", b"transfer-encoding", b"user-agent",
)  # fmt: skip
_FIELD_NAME = re.compile(rb"\r\n([!#$%&'*+\-.^_`|~0-9A-Za-z]+):")
# The first line of a request (at the start, or after an empty line) whose version is not 1.x
# (`HTTP/2.0`, `HTTP/3.1`, or none: `GET /x`), with more of the head after it.
_NOT_HTTP1_THEN_MORE = re.compile(
    rb"(?:\A|\n\r?\n)(?:\r?\n)*[^ \r\n]+ +[^ \r\n]+(?: +HTTP/(?!1\.)[0-9]\.[0-9])? *\r?\n."
)
_RTSP_OR_ICE = re.compile(rb" (?:RTSP|ICE)/[0-9]\.[0-9]\r?\n")


@dataclass(frozen=True)
class Deviation:
    name: str
    servers: frozenset[str]  # the servers allowed to answer differently from the others
    reference: str  # where it is documented (a README row) or tracked (an issue item)
    matches: Callable[[bytes], bool]
    answers: Callable[[Answers], bool] = lambda answers: True
    kind: str = DISAGREEMENT  # or HANG: a known hang of `servers` on matching inputs


def _repeated_singleton(data: bytes) -> bool:
    """A header section (any of the requests) with one of `_SINGLETONS` twice."""
    for head in data.split(b"\r\n\r\n"):
        names = [m[1].lower() for m in _FIELD_NAME.finditer(head)]
        if any(names.count(n) > 1 for n in _SINGLETONS):
            return True
    return False


def _bytes_after_close(data: bytes) -> bool:
    """A request saying `Connection: close` with bytes after its header section and body."""
    close = _CLOSE.search(data)
    if close is None:
        return False
    head_end = data.find(b"\r\n\r\n", close.start())
    if head_end < 0:
        return False
    length = _CONTENT_LENGTH.search(data, 0, head_end + 2)
    return len(data) > head_end + 4 + (int(length[1]) if length else 0)


def _aiohttp_one_error_for_many(answers: Answers) -> bool:
    """aiohttp's answers end in one error (a 400, or the 414, 431 or 505 we make of its parser's
    error) where another server, after the same answers, gave as many or more: the requests of
    one read went into that error."""
    mine = answers.get("aiohttp")
    if not mine or mine[-1] not in (400, 414, 431, 505):
        return False
    same = mine[:-1]
    return any(
        name != "aiohttp" and len(s) >= len(mine) and s != mine and s[: len(same)] == same
        for name, s in answers.items()
    )


def _aiohttp_505_where_others_400(answers: Answers) -> bool:
    """aiohttp's last answer is 505 where another's is 400, or the other way round."""
    mine = answers.get("aiohttp")
    if not mine:
        return False
    return any(
        name != "aiohttp" and s and {s[-1], mine[-1]} == {400, 505} for name, s in answers.items()
    )


DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "aiohttp-PIPE-02",
        frozenset({"aiohttp"}),
        "README, Known deviations: aiohttp PIPE-02 (bytes after a request that said close)",
        _bytes_after_close,
        _aiohttp_one_error_for_many,
    ),
    Deviation(
        "aiohttp-ERR-08-HTTP/1.2",
        frozenset({"aiohttp"}),
        "README, Known deviations: aiohttp ERR-08 HTTP/1.2 (400, not served as 1.1)",
        lambda data: re.search(rb"HTTP/1\.[2-9]\r\n", data) is not None,
    ),
    Deviation(
        "aiohttp-PIPELINE-BEFORE-ERROR",
        frozenset({"aiohttp"}),
        "README, Known deviations: aiohttp PIPELINE-BEFORE-ERROR (one error for a whole read)",
        lambda data: 0 <= data.find(b"\n\r\n") < len(data) - 3,  # bytes after the first head
        _aiohttp_one_error_for_many,
    ),
    Deviation(
        "aiohttp-REPEATED-FIELD",
        frozenset({"aiohttp"}),
        "README, Known deviations: aiohttp REPEATED-FIELD (User-Agent twice, say: 400)",
        _repeated_singleton,
    ),
    Deviation(
        "aiohttp-VERSION-ORDER",
        frozenset({"aiohttp"}),
        "README, Known deviations: aiohttp VERSION-ORDER (505 or 400 first, another order)",
        lambda data: _NOT_HTTP1_THEN_MORE.search(data) is not None,
        _aiohttp_505_where_others_400,
    ),
    Deviation(
        "llhttp-RTSP-ICE-VERSION",
        frozenset({"aiohttp", "uvloop"}),
        "README, Known deviations: aiohttp and uvloop RTSP-ICE-VERSION (served; stdlib 400)",
        lambda data: _RTSP_OR_ICE.search(data) is not None,
    ),
)


def explain(data: bytes, answers: Answers) -> tuple[str, ...] | None:
    """Names of the deviations that explain a disagreement, or None when none does."""
    groups: dict[Statuses, list[str]] = {}
    for name, statuses in answers.items():
        groups.setdefault(statuses, []).append(name)
    candidates = [d for d in DEVIATIONS if d.kind == DISAGREEMENT and d.matches(data)]
    candidates = [d for d in candidates if d.answers(answers)]
    for reference in sorted(groups.values(), key=len, reverse=True):
        used: list[str] = []
        for server in answers:
            if server in reference:
                continue
            cover = next((d for d in candidates if server in d.servers), None)
            if cover is None:
                break
            if cover.name not in used:
                used.append(cover.name)
        else:
            return tuple(used)
    return None


def known_hang(server: str, data: bytes) -> str | None:
    """The name of the deviation that covers a hang of `server` on `data`, if any."""
    for d in DEVIATIONS:
        if d.kind == HANG and server in d.servers and d.matches(data):
            return d.name
    return None
