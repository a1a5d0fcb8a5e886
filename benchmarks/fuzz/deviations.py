"""Known differences between the reference servers, by name: the fuzzer reports a case they
explain as that deviation, not as a failure.

Each `Deviation` says which servers may answer differently (`servers`), on which inputs
(`matches`, a predicate over the bytes sent) and, where the input alone is too broad, with which
answers (`answers`, over each server's status sequence). `reference` points at the README row
(or issue item) that documents it. A disagreement is explained when, taking one group of
servers that agree as the reference, every other server is covered by a deviation that matches.

Entries named `TODO-...` are not documented deviations but open defects that other branches are
fixing (issue 8) or that the fuzzer found and the lead must triage; they keep `make test` honest
about everything else meanwhile. Delete each once its fix is merged and rerun
`python -m benchmarks fuzz --count 150 --seed 1`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Statuses = tuple[int, ...]
Answers = Mapping[str, Statuses]
DISAGREEMENT, HANG = "disagreement", "hang"

# The methods llhttp knows (uppercase only); stdlib's http.server accepts any word.
_LLHTTP_METHODS = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH "
    b"SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY "
    b"SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY".split()
)
_REQUEST_LINE = re.compile(rb"(?:^|\r\n\r\n)(?:\r\n)*([^ \r\n]*)( ?)")
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BARE_CR = re.compile(rb"\r(?!\n)")
_ODD_SEPARATOR = re.compile(rb"^[^\r\n]*[\t\x0b\x0c\xa0]", re.MULTILINE)
_CHUNK_SIZE_SPACE = re.compile(rb"\n[0-9A-Fa-f]*[ \t]+[0-9A-Fa-f]*[\r;]|\n[ \t]+[0-9A-Fa-f]")
_OBS_FOLD = re.compile(rb"\r\n[ \t]")
_CLOSE = re.compile(rb"(?i)\r\nconnection:[^\r\n]*\bclose\b")
_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:[ \t]*([0-9]{1,9})[ \t]*\r\n")
_DUPLICATE_HOST = re.compile(rb"(?is)\r\nhost:.*\r\nhost:")


@dataclass(frozen=True)
class Deviation:
    name: str
    servers: frozenset[str]  # the servers allowed to answer differently from the others
    reference: str  # where it is documented (a README row) or tracked (an issue item)
    matches: Callable[[bytes], bool]
    answers: Callable[[Answers], bool] = lambda answers: True
    kind: str = DISAGREEMENT  # or HANG: a known hang of `servers` on matching inputs


def _methods(data: bytes) -> list[bytes]:
    return [m[1] for m in _REQUEST_LINE.finditer(data)]


def _unknown_method(data: bytes) -> bool:
    return any(m and m not in _LLHTTP_METHODS for m in _methods(data))


def _stdlib_lenient(data: bytes) -> bool:
    """What issue 8 item 3 lists: stdlib serves what llhttp rejects."""
    return bool(
        _CONTROL.search(data)
        or _BARE_CR.search(data)
        or _ODD_SEPARATOR.search(data)
        or _CHUNK_SIZE_SPACE.search(data)
        or _OBS_FOLD.search(data)
        or _unknown_method(data)
    )


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
    """aiohttp answered a single 400 where another server answered something before it."""
    others = [s for name, s in answers.items() if name != "aiohttp"]
    return answers.get("aiohttp") == (400,) and any(s and s != (400,) for s in others)


def _stdlib_no_trailing_400(answers: Answers) -> bool:
    """stdlib's answer is another server's, less one final 400."""
    mine = answers.get("stdlib")
    return mine is not None and any(s == (*mine, 400) for s in answers.values())


def _trailing_junk_at_eof(data: bytes) -> bool:
    """The input ends in a partial line that cannot start a request (no CRLF after it)."""
    tail = data.rsplit(b"\n", 1)[-1]
    return bool(tail) and not tail.isalpha()


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
    # --- open defects of issue 8, fixed on other branches: delete after merging them ---
    Deviation(
        "TODO-issue8-item1-uvloop-upgrade-body",
        frozenset({"uvloop"}),
        "issue 8 item 1 (wip-smuggle): uvloop parses the body of an Upgrade request as requests",
        lambda data: re.search(rb"(?i)\r\nupgrade:", data) is not None,
    ),
    Deviation(
        "TODO-issue8-item2-connect-body",
        frozenset({"aiohttp", "uvloop"}),
        "issue 8 item 2 (wip-smuggle): a CONNECT body is parsed as a request",
        lambda data: b"CONNECT " in data,
    ),
    Deviation(
        "TODO-issue8-item3-stdlib-lenient",
        frozenset({"stdlib"}),
        "issue 8 item 3 (wip-smuggle): stdlib accepts control characters, bare CR, odd "
        "separators, spaced chunk sizes, obs-fold, lowercase or unknown methods",
        _stdlib_lenient,
    ),
    Deviation(
        "TODO-issue8-item9-status-differences",
        frozenset({"stdlib", "aiohttp"}),
        "issue 8 item 9 (wip-smuggle): 431/400/431, 414/400/400, 400/505/505 (no version)",
        lambda data: (
            re.match(rb"[^\r\n]*(?<! HTTP/\d\.\d)\r\n", data) is not None or len(data) > 8192
        ),
    ),
    Deviation(
        "TODO-issue8-item7-aiohttp-drops-pipelined",
        frozenset({"aiohttp"}),
        "issue 8 item 7 (faults branch): a malformed request in the same read as valid ones "
        "before it makes aiohttp answer one 400 for all of them",
        lambda data: 0 <= data.find(b"\r\n\r\n") < len(data) - 4,
        _aiohttp_one_400_for_many,
    ),
    Deviation(
        "TODO-issue8-item6-aiohttp-ignores-fin",
        frozenset({"aiohttp"}),
        "issue 8 item 6 (faults branch): aiohttp keeps a connection open after the client's FIN "
        "(after a 501, and while a body is incomplete) until a timer fires",
        lambda data: True,
        kind=HANG,
    ),
    # --- found by this fuzzer, not in issue 8: for the lead to triage ---
    Deviation(
        "TODO-new-aiohttp-http10-duplicate-host",
        frozenset({"aiohttp"}),
        "new (fuzz): two Host fields in an HTTP/1.0 request: aiohttp 400, stdlib and uvloop 200",
        lambda data: _DUPLICATE_HOST.search(data) is not None,
    ),
    Deviation(
        "TODO-new-stdlib-leading-bare-lf",
        frozenset({"stdlib"}),
        "new (fuzz): a bare LF before a request line: stdlib 400, llhttp skips it as an empty line",
        lambda data: re.search(rb"(?:^|\n)\n", data) is not None,
    ),
    Deviation(
        "TODO-new-stdlib-silent-on-partial-junk",
        frozenset({"stdlib"}),
        "new (fuzz): junk after the last request, then EOF: llhttp answers 400 at its first "
        "byte, stdlib waits for a line end and closes without a response",
        _trailing_junk_at_eof,
        _stdlib_no_trailing_400,
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
