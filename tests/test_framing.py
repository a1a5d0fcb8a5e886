"""servers.framing without sockets: every 400/501/505 case of spec rule 9 as a table."""

from __future__ import annotations

import pytest

from servers.framing import (
    MAX_CHUNK_SIZE,
    NO_BODY,
    BodyFraming,
    BodyKind,
    BodyReader,
    FramingFields,
    ProtocolError,
    body_framing,
    check_field_name,
    check_target,
    check_version,
    chunk_line_prefix_error,
    field_line_prefix_error,
    parse_chunk_line,
    parse_field_line,
    parse_request_line,
    parse_version,
    request_line_prefix_error,
    request_line_too_long,
)

H11 = (1, 1)
H10 = (1, 0)
HOST = ("host", "t")


@pytest.mark.parametrize(
    ("text", "version"),
    [("HTTP/1.1", (1, 1)), ("HTTP/1.0", (1, 0)), ("HTTP/1.2", (1, 2)), ("HTTP/1.9", (1, 9))],
)
def test_parse_version_accepts_http1(text: str, version: tuple[int, int]) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("HTTP/2.0", 505),  # ERR-08
        ("HTTP/3.0", 505),
        ("HTTP/0.9", 505),
        ("HTTP/1", 400),  # ERR-08
        ("HTTP/2", 400),
        ("http/1.1", 400),
        ("HTTP/1.1 ", 400),
        (" HTTP/1.1", 400),
        ("HTTP/11.1", 400),
        ("HTTP/1.10", 400),
        ("HTTP/1.x", 400),
        ("HTTP 1.1", 400),
        ("", 400),
        ("HTTP/1.1\n", 400),  # `$` must not match before a trailing newline
        ("HTTP/\u0661.\u0661", 400),  # DIGIT is ASCII only (RFC 5234), not any Unicode digit
    ],
)
def test_parse_version_rejects(text: str, status: int) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_version(text)
    assert info.value.status == status


@pytest.mark.parametrize(
    "name", [b"Host", b"host", b"Content-Length", b"X-Custom_1", b"a", b"!#$%&'*+-.^_`|~"]
)
def test_check_field_name_accepts_tokens(name: bytes) -> None:
    check_field_name(name)


@pytest.mark.parametrize(
    "name",
    [
        b"Host ",  # ERR-02: whitespace before the colon
        b"Host\t",
        b" Host",
        b"Ho st",
        b"",
        b"Host\n",  # a bare LF must not slip through
        b"H\xc3\xa9",
        b"(host)",
        b"a/b",
    ],
)
def test_check_field_name_rejects(name: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        check_field_name(name)
    assert info.value.status == 400


# (version, fields) -> framing
@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/"),
        ("GET", "/sleep?ms=1&x=%20"),
        ("GET", "/a/b;c=d"),
        ("GET", "http://t/peer"),  # absolute form
        ("GET", "https://t:8443/"),
        ("OPTIONS", "*"),  # asterisk form: OPTIONS only
        ("CONNECT", "t:443"),  # authority form: CONNECT only
        ("CONNECT", "[::1]:443"),
        ("GET", "http://u@t/"),  # userinfo, as llhttp takes it
        ("GET", "http://[::1]:80/x?y"),
        ("GET", "http://t?q"),
    ],
)
def test_check_target_accepts(method: str, target: str) -> None:
    check_target(method, target)


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "foo"),
        ("GET", "*"),
        ("GET", "t:443"),
        ("GET", ""),
        ("GET", "/\xff"),  # a raw byte outside visible ASCII (latin-1 decoded)
        ("GET", "/a\tb"),
        ("GET", "/caf\u00e9"),
        ("CONNECT", "t"),  # authority form needs a port
        ("GET", "://t/"),
        # llhttp's URL parser rejects these (stdlib served them before issue 8's fuzzing):
        ("GET", "h1://t/"),  # a scheme is letters only
        ("GET", "http://t#f/"),  # `#`, `{`, `"` ... are not host bytes
        ("GET", "http://t{/"),
        ("GET", "http://u@@t/"),
        ("GET", "http://?q"),  # and a host is not empty
        ("CONNECT", "t{:443"),
    ],
)
def test_check_target_rejects(method: str, target: str) -> None:
    with pytest.raises(ProtocolError) as info:
        check_target(method, target)
    assert info.value.status == 400


VALID_FRAMING = [
    pytest.param(H11, [HOST], NO_BODY, id="no-body"),
    pytest.param(H10, [], NO_BODY, id="1.0-without-host"),
    pytest.param(H11, [HOST, ("content-length", "5")], BodyFraming(BodyKind.LENGTH, 5), id="cl"),
    pytest.param(H11, [HOST, ("content-length", "0")], NO_BODY, id="cl-zero"),
    pytest.param(
        H11, [HOST, ("content-length", " 7 ")], BodyFraming(BodyKind.LENGTH, 7), id="cl-ows"
    ),
    pytest.param(H10, [("content-length", "3")], BodyFraming(BodyKind.LENGTH, 3), id="1.0-cl"),
    pytest.param(
        H11, [HOST, ("transfer-encoding", "chunked")], BodyFraming(BodyKind.CHUNKED), id="chunked"
    ),
    pytest.param(
        H11, [HOST, ("transfer-encoding", "Chunked")], BodyFraming(BodyKind.CHUNKED), id="Chunked"
    ),
    pytest.param(
        (1, 2), [HOST, ("transfer-encoding", "chunked")], BodyFraming(BodyKind.CHUNKED), id="1.2"
    ),
]


@pytest.mark.parametrize(("version", "fields", "framing"), VALID_FRAMING)
def test_body_framing(
    version: tuple[int, int], fields: list[tuple[str, str]], framing: BodyFraming
) -> None:
    assert body_framing(version, fields) == framing


# (version, fields) -> status; every 400/501 case of rule 9 that concerns framing.
REJECTED_FRAMING = [
    pytest.param(H11, [], 400, id="err03-no-host"),
    pytest.param(H11, [HOST, ("host", "u")], 400, id="two-hosts"),
    pytest.param(H10, [HOST, HOST], 400, id="1.0-two-hosts"),  # RFC 9112 §3.2: any version
    pytest.param((1, 2), [], 400, id="1.2-no-host"),
    pytest.param(H11, [HOST, ("content-length", "abc")], 400, id="err06-cl-abc"),
    pytest.param(H11, [HOST, ("content-length", "")], 400, id="cl-empty"),
    pytest.param(H11, [HOST, ("content-length", "-1")], 400, id="cl-negative"),
    pytest.param(H11, [HOST, ("content-length", "+5")], 400, id="cl-plus"),
    pytest.param(H11, [HOST, ("content-length", "5 5")], 400, id="cl-space"),
    pytest.param(H11, [HOST, ("content-length", "0x5")], 400, id="cl-hex"),
    pytest.param(H11, [HOST, ("content-length", "1" * 19)], 400, id="cl-too-long"),
    pytest.param(H11, [HOST, ("content-length", "\u00b2")], 400, id="cl-superscript-two"),
    pytest.param(H11, [HOST, ("content-length", "\u0663")], 400, id="cl-arabic-digit"),
    pytest.param(
        H11, [HOST, ("content-length", "5"), ("content-length", "6")], 400, id="err06-two-cl"
    ),
    pytest.param(H11, [HOST, ("content-length", "5, 6")], 400, id="err06-cl-list"),
    # Identical values: RFC 9112 §6.3 allows accepting them; llhttp does not, nor do we.
    pytest.param(
        H11, [HOST, ("content-length", "5"), ("content-length", "5")], 400, id="cl-identical"
    ),
    pytest.param(H11, [HOST, ("content-length", "5, 5")], 400, id="cl-identical-list"),
    pytest.param(
        H11,
        [HOST, ("content-length", "5"), ("transfer-encoding", "chunked")],
        400,
        id="err06-cl-and-chunked",
    ),
    pytest.param(
        H11,
        [HOST, ("transfer-encoding", "chunked"), ("content-length", "5")],
        400,
        id="err06-chunked-and-cl",
    ),
    pytest.param(H11, [HOST, ("transfer-encoding", "pigeons")], 400, id="err05-pigeons"),
    pytest.param(H11, [HOST, ("transfer-encoding", "chunked, gzip")], 400, id="chunked-not-last"),
    pytest.param(H11, [HOST, ("transfer-encoding", "")], 400, id="te-empty"),
    pytest.param(H11, [HOST, ("transfer-encoding", "chunked, chunked")], 400, id="chunked-twice"),
    pytest.param(H11, [HOST, ("transfer-encoding", "gzip, chunked")], 501, id="err05-gzip"),
    pytest.param(
        H11,
        [HOST, ("transfer-encoding", "gzip"), ("transfer-encoding", "chunked")],
        501,
        id="err05-gzip-two-fields",
    ),
    pytest.param(H10, [("transfer-encoding", "chunked")], 400, id="err07-1.0-chunked"),
]


@pytest.mark.parametrize(("version", "fields", "status"), REJECTED_FRAMING)
def test_body_framing_rejects(
    version: tuple[int, int], fields: list[tuple[str, str]], status: int
) -> None:
    with pytest.raises(ProtocolError) as info:
        body_framing(version, fields)
    assert info.value.status == status
    assert str(info.value).startswith(f"{status} ")


def test_protocol_error_carries_status_and_detail() -> None:
    exc = ProtocolError(431, "header section too large")
    assert (exc.status, exc.detail, str(exc)) == (
        431,
        "header section too large",
        "431 header section too large",
    )


def test_limits_are_8_kib() -> None:
    from servers import framing

    assert framing.MAX_HEADER_BYTES == 8192
    assert framing.MAX_REQUEST_LINE_BYTES == 8192


# -- the request line, field lines and chunk-size lines, as llhttp splits and rejects them --------


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        (b"GET / HTTP/1.1", ("GET", "/", (1, 1))),
        (b"GET  /  HTTP/1.0", ("GET", "/", (1, 0))),  # runs of SP: llhttp accepts them
        (b"M-SEARCH /x HTTP/1.1", ("M-SEARCH", "/x", (1, 1))),
        (b"OPTIONS * HTTP/1.1", ("OPTIONS", "*", (1, 1))),
        (b"CONNECT t:443 HTTP/1.1", ("CONNECT", "t:443", (1, 1))),
        (b"QUERY /q HTTP/1.1", ("QUERY", "/q", (1, 1))),
        # The version is checked after the header section (check_version), as llhttp does:
        (b"GET /x", ("GET", "/x", (0, 9))),  # HTTP/0.9 syntax, which llhttp reads as 0.9
        (b"GET / HTTP/2.0", ("GET", "/", (2, 0))),
        (b"GET / HTTP/3.1", ("GET", "/", (3, 1))),
    ],
)
def test_parse_request_line(line: bytes, parsed: tuple[str, str, tuple[int, int]]) -> None:
    assert parse_request_line(line) == parsed


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"get / HTTP/1.1", 400),  # methods are case-sensitive
        (b"FOO / HTTP/1.1", 400),  # not a method llhttp knows
        (b"PRI * HTTP/2.0", 400),
        (b"GET\t/ HTTP/1.1", 400),  # TAB, VT, NBSP are not separators (str.split() says they are)
        (b"GET\x0b/ HTTP/1.1", 400),
        (b"GET\xa0/ HTTP/1.1", 400),
        (b"GET /\tHTTP/1.1", 400),  # two words, but the target is bad: 400 before 505
        (b" GET / HTTP/1.1", 400),
        (b"GET / HTTP/1.1 ", 400),
        (b"GET / HTTP/1.1\r", 400),
        (b"GET / HTTP/1.1 x", 400),
        (b"GET", 400),
        (b"", 400),
        (b"GET / HTTP/1", 400),  # malformed, not unsupported: llhttp stops at the line
        (b"GET / RTSP/1.0", 400),
    ],
)
def test_parse_request_line_rejects(line: bytes, status: int) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request_line(line)
    assert info.value.status == status


@pytest.mark.parametrize(("version", "status"), [((0, 9), 505), ((2, 0), 505), ((3, 1), 505)])
def test_check_version_rejects_other_majors(version: tuple[int, int], status: int) -> None:
    with pytest.raises(ProtocolError) as info:
        check_version(version)
    assert info.value.status == status


def test_check_version_accepts_1x() -> None:
    assert [check_version(v) for v in ((1, 0), (1, 1), (1, 2))] == [(1, 0), (1, 1), (1, 2)]


@pytest.mark.parametrize(
    ("prefix", "status"),
    [
        (b"GET /aaaa", 414),
        (b"A" * 9000, 400),
        (b"GETX /a", 400),
        (b"get /a", 400),
        (b"GET /\x01aaaa", 400),  # llhttp stops at the bad byte, long before the limit
    ],
)
def test_request_line_too_long(prefix: bytes, status: int) -> None:
    assert request_line_too_long(prefix).status == status


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (b"Host: t", (b"Host", b"t")),
        (b"Host:t", (b"Host", b"t")),
        (b"X: \ta b\t ", (b"X", b"a b")),
        (b"X: caf\xe9", (b"X", b"caf\xe9")),  # obs-text
        (b"X:", (b"X", b"")),
    ],
)
def test_parse_field_line(line: bytes, field: tuple[bytes, bytes]) -> None:
    assert parse_field_line(line) == field


@pytest.mark.parametrize(
    "line",
    [
        b"X: a\x01b",
        b"X: a\x7fb",
        b"X: a\x00b",
        b"X: a\rb",  # a bare CR, and `\r\r\n` once the CRLF is taken off
        b"X: a\r",
        b"X: a\x1f",
        b" X: y",  # obs-fold, or a trailer line starting with a space
        b"X : y",
        b": y",
        b"no colon",
    ],
)
def test_parse_field_line_rejects(line: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_field_line(line)
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("line", "size"),
    [
        (b"5", 5),
        (b"A", 10),
        (b"00000000000000005", 5),  # any number of leading zeros, as llhttp
        (b"f" * 16, MAX_CHUNK_SIZE),
        (b"5;a", 5),
        (b"5;a=b", 5),
        (b"5;a=", 5),
        (b'5;a="q r"', 5),
        (b'5;a="q\\"r"', 5),
        (b'5;a="\t\x80"', 5),
        (b"5;a=b;c=d", 5),
        (b"5;;a", 5),
        (b"5;=b", 5),
        (b"0;a=b", 0),
    ],
)
def test_parse_chunk_line(line: bytes, size: int) -> None:
    assert parse_chunk_line(line) == size


@pytest.mark.parametrize(
    "line",
    [
        b"5 ",
        b" 5",
        b"5\t",
        b"0x5",
        b"",
        b"5 ;a",
        b"5; a",
        b"5;a =b",
        b"5;a= b",
        b"5;",
        b"5;a=b;",
        b"5;a\rb",  # a bare CR in an extension
        b"5;a\tb",
        b"5;a=b c",
        b"5;a==b",
        b'5;a=b"c',
        b'5;a="q"x',
        b'5;a="q',
        b'5;a="\x7f"',
        b"5;a=\x80",
        b"1" + b"0" * 16,  # 2**64: llhttp's "Chunk size overflow"
    ],
)
def test_parse_chunk_line_rejects(line: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_chunk_line(line)
    assert info.value.status == 400


CHUNKED = BodyFraming(BodyKind.CHUNKED)
NEXT = b"GET / HTTP/1.1\r\n\r\n"


@pytest.mark.parametrize(
    ("framing", "body"),
    [
        (BodyFraming(BodyKind.LENGTH, 5), b"hello"),
        (CHUNKED, b"5\r\nhello\r\n0\r\n\r\n"),
        (CHUNKED, b"5;a=b\r\nhello\r\n3\r\nabc\r\n0\r\nX: y\r\nZ:\r\n\r\n"),
        (CHUNKED, b"0\r\n\r\n"),
    ],
)
def test_body_reader_stops_at_the_end_of_the_body(framing: BodyFraming, body: bytes) -> None:
    """Fed at once or byte by byte, the reader takes exactly the body, never what follows."""
    assert BodyReader(framing).feed(body + NEXT) == len(body)
    reader = BodyReader(framing)
    for i in range(len(body) - 1):
        assert reader.feed(body[i : i + 1]) is None, i
    assert reader.feed(body[-1:] + NEXT) == 1
    assert reader.done


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"5 \r\nhello\r\n0\r\n\r\n", 400),
        (b"5\nhello\r\n0\r\n\r\n", 400),  # bare LF
        (b"5\r\nhelloX\r\n0\r\n\r\n", 400),  # chunk longer than its size
        (b"5\r\nhello\n0\r\n\r\n", 400),
        (b"0\r\n X: y\r\n\r\n", 400),  # trailer line starting with a space
        (b"0\r\nX: a\x01\r\n\r\n", 400),
        (b"5;" + b"a" * 5000 + b"\r\n", 400),  # chunk-size line over its limit
        (b"0\r\n" + b"X: " + b"a" * 9000 + b"\r\n\r\n", 431),
    ],
)
def test_body_reader_rejects(body: bytes, status: int) -> None:
    with pytest.raises(ProtocolError) as info:
        BodyReader(CHUNKED).feed(body)
    assert info.value.status == status


def test_body_reader_rejects_bad_bytes_after_chunk_data_at_once() -> None:
    """After chunk data only CRLF may follow: `X` is an error without waiting for a line."""
    reader = BodyReader(CHUNKED)
    assert reader.feed(b"1\r\nx") is None
    with pytest.raises(ProtocolError):
        reader.feed(b"X")


@pytest.mark.parametrize(
    ("sent", "bad"),
    [
        (b"5", b" "),  # issue 8 item 3's `5 `, rejected at the space, not at the CRLF
        (b"5;a", b"\x01"),
        (b"ffffffffffffffff", b"0"),  # overflow
        (b"0\r\nX", b" "),  # a space before the colon of a trailer
        (b"0\r\nX: a", b"\x7f"),
    ],
)
def test_body_reader_rejects_a_bad_byte_before_its_line_ends(sent: bytes, bad: bytes) -> None:
    """As llhttp: at the byte, not at a CRLF that a client may never send."""
    reader = BodyReader(CHUNKED)
    assert reader.feed(sent) is None
    with pytest.raises(ProtocolError) as info:
        reader.feed(bad)
    assert info.value.status == 400


def test_body_reader_without_a_body_takes_nothing() -> None:
    assert BodyReader(NO_BODY).feed(NEXT) == 0


# -- lines that stop short: what llhttp has already rejected before their LF arrives ------------
# (the stdlib server asks at EOF inside a line; BodyReader asks after every read)


@pytest.mark.parametrize(
    "prefix",
    [b"", b"G", b"GE", b"GET", b"PRI", b"DESCRIBE /", b"GET ", b"GET  /x", b"GET *x", b"GET h",
     b"GET http:/", b"GET http://u@t", b"GET /x\r", b"CONNECT [::1]:4", b"GET / HTT",
     b"GET / HTTP/1.", b"GET / HTTP/1.1\r", b"GET /  RTSP/1"],
)  # fmt: skip
def test_request_line_prefix_still_possible(prefix: bytes) -> None:
    assert request_line_prefix_error(prefix) is None


@pytest.mark.parametrize(
    "prefix",
    [b"\xa0", b" ", b"GX", b"get", b"FOO ", b"GET \t", b"GET 1", b"GET h1", b"GET http:x",
     b"GET http://t#", b"GET /\x01", b"GET /x\rx", b"GET \r", b"GET h\r", b"GET / X",
     b"GET / HTTPS", b"GET / HTTP/11", b"GET / HTTP/1.1 ", b"GET / HTTP/1.1\rx"],
)  # fmt: skip
def test_request_line_prefix_already_rejected(prefix: bytes) -> None:
    error = request_line_prefix_error(prefix)
    assert error is not None and error.status == 400


@pytest.mark.parametrize("prefix", [b"", b"\r", b"Ho", b"Host:", b"Host: t\r", b"X: \xe9\t"])
def test_field_line_prefix_still_possible(prefix: bytes) -> None:
    assert field_line_prefix_error(prefix) is None


@pytest.mark.parametrize(
    "prefix",
    [b" ", b"\t", b":", b"Ho st", b"Host :", b"X: a\x01", b"X: a\rb", b"\rx",
     b"Content-Length: 1x", b"content-length: 1 2", b"Content-Length: " + b"9" * 20],
)  # fmt: skip
def test_field_line_prefix_already_rejected(prefix: bytes) -> None:
    error = field_line_prefix_error(prefix)
    assert error is not None and error.status == 400


@pytest.mark.parametrize("prefix", [b"", b"5", b"5;", b"5;a=", b'5;a="b', b'5;a="b\\', b"5\r"])
def test_chunk_line_prefix_still_possible(prefix: bytes) -> None:
    assert chunk_line_prefix_error(prefix) is None


@pytest.mark.parametrize("prefix", [b"\r", b";", b"5 ", b" ", b"5;\r", b"5;a=\x01", b"5\rx"])
def test_chunk_line_prefix_already_rejected(prefix: bytes) -> None:
    error = chunk_line_prefix_error(prefix)
    assert error is not None and error.status == 400


def _llhttp_rejects(data: bytes) -> bool:
    """httptools (llhttp) as the uvloop server configures it (versions relaxed)."""
    httptools = pytest.importorskip("httptools")
    parser = httptools.HttpRequestParser(object())
    parser.set_dangerous_leniencies(lenient_version=True)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        return False
    except httptools.HttpParserError:
        return True
    return False


def test_prefix_checks_agree_with_llhttp_on_every_prefix_of_fuzz_cases() -> None:
    """Every prefix of the first line, of each field line and of each chunk line of 600 fuzz
    cases (seed 1, `python -m benchmarks fuzz`): rejected by the prefix check exactly when
    llhttp has already rejected it."""
    from benchmarks.fuzz.mutator import make_case

    chunked_head = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    lines: set[tuple[bytes, bytes, object]] = set()
    for index in range(600):
        data = make_case(1, index).data
        head, _, body = data.lstrip(b"\r\n").partition(b"\r\n\r\n")
        first, *fields = head.split(b"\n")
        lines.add((b"", first, request_line_prefix_error))
        lines.update((b"GET / HTTP/1.1\r\n", f, field_line_prefix_error) for f in fields)
        if b"chunked" in head.lower():
            lines.update((chunked_head, c, chunk_line_prefix_error) for c in body.split(b"\n"))
    disagree = [
        (before + line[:k])[-60:]
        for before, line, check in lines
        for k in range(len(line) + 1)
        if (check(line[:k]) is not None) != _llhttp_rejects(before + line[:k])  # type: ignore[operator]
    ]
    assert not disagree, disagree[:10]


# -- framing fields as llhttp checks them while it reads (before the end of the section) --------


@pytest.mark.parametrize(
    "fields",
    [
        [(b"Content-Length", b" 5\t")],
        [(b"Content-Length", b"0" * 30)],  # leading zeros: llhttp's uint64 does not overflow
        [(b"Transfer-Encoding", b"gzip"), (b"Transfer-Encoding", b"chunked")],
        [(b"Transfer-Encoding", b",chunked ")],
        [(b"Transfer-Encoding", b"chunked\t")],  # not chunked: body_framing's 400, at the end
    ],
)
def test_framing_fields_accepted_while_reading(fields: list[tuple[bytes, bytes]]) -> None:
    checks = FramingFields()
    for name, value in fields:
        checks.check(name, value)


@pytest.mark.parametrize(
    "fields",
    [
        [(b"Content-Length", b"x")],
        [(b"Content-Length", b"+0")],
        [(b"Content-Length", b"\xa09")],
        [(b"Content-Length", b"18446744073709551616")],
        [(b"Content-Length", b"1"), (b"content-length", b"1")],
        [(b"Content-Length", b"1"), (b"Transfer-Encoding", b"chunked")],
        [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"1")],
        [(b"Transfer-Encoding", b"chunked,")],
        [(b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"gzip")],
    ],
)
def test_framing_fields_rejected_while_reading(fields: list[tuple[bytes, bytes]]) -> None:
    checks = FramingFields()
    with pytest.raises(ProtocolError) as info:
        for name, value in fields:
            checks.check(name, value)
    assert info.value.status == 400


@pytest.mark.parametrize("name", [b"Content-Length", b"Transfer-Encoding"])
def test_an_empty_framing_field_is_rejected_at_the_next_line(name: bytes) -> None:
    """llhttp knows that no value comes only when the next line starts: returned, not raised."""
    error = FramingFields().check(name, b" \t")
    assert error is not None and error.status == 400


def test_a_second_content_length_is_rejected_at_its_first_digit() -> None:
    checks = FramingFields()
    checks.check(b"Content-Length", b" 1")
    assert checks.prefix_error(b"Content-Length: ") is None
    error = checks.prefix_error(b"content-length: 1")
    assert error is not None and error.status == 400


def test_a_coding_ends_before_sp_not_before_htab() -> None:
    """llhttp: `chunked ` is chunked, `chunked\t` is not (final coding: 400)."""
    assert body_framing(H11, [HOST, ("transfer-encoding", "chunked ")]).kind is BodyKind.CHUNKED
    with pytest.raises(ProtocolError) as info:
        body_framing(H11, [HOST, ("transfer-encoding", "chunked\t")])
    assert info.value.status == 400
