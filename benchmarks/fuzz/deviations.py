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
# A request line's version, with more of the head after it.
_VERSION_THEN_MORE = re.compile(rb"(?m)^[^\r\n]* HTTP/([0-9])\.([0-9])\r?\n.")
_LLHTTP_KNOWS = {(b"0", b"9"), (b"2", b"0")}  # besides 1.x (ERR-08's for 1.2 and above)
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


def _aiohttp_one_400_for_many(answers: Answers) -> bool:
    """aiohttp's answers end in one 400 where another server, after the same answers, gave as
    many or more: the requests of one read went into that 400."""
    mine = answers.get("aiohttp")
    if not mine or mine[-1] != 400:
        return False
    same = mine[:-1]
    return any(
        name != "aiohttp" and len(s) >= len(mine) and s != mine and s[: len(same)] == same
        for name, s in answers.items()
    )


def _version_llhttp_rejects(data: bytes) -> bool:
    """A major version other than 1 that aiohttp's llhttp rejects as it reads the line (505
    there, via our handle_error) where the others read the header section first."""
    versions = [(m[1], m[2]) for m in _VERSION_THEN_MORE.finditer(data)]
    return any(v[0] != b"1" and v not in _LLHTTP_KNOWS for v in versions)


def _aiohttp_505_first(answers: Answers) -> bool:
    aiohttp = answers.get("aiohttp")
    return aiohttp is not None and aiohttp[-1:] == (505,)


DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "aiohttp-PIPE-02",
        frozenset({"aiohttp"}),
        "README, Known deviations: aiohttp PIPE-02 (bytes after a request that said close)",
        _bytes_after_close,
        _aiohttp_one_400_for_many,
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
        "README, Known deviations: aiohttp PIPELINE-BEFORE-ERROR (one 400 for a whole read)",
        lambda data: 0 <= data.find(b"\r\n\r\n") < len(data) - 4,
        _aiohttp_one_400_for_many,
    ),
    Deviation(
        "aiohttp-REPEATED-FIELD",
        frozenset({"aiohttp"}),
        "README, Known deviations: aiohttp REPEATED-FIELD (User-Agent twice, say: 400)",
        _repeated_singleton,
    ),
    Deviation(
        "aiohttp-VERSION-FIRST",
        frozenset({"aiohttp"}),
        "README, Known deviations: aiohttp VERSION-FIRST (505 before the header section)",
        _version_llhttp_rejects,
        _aiohttp_505_first,
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
