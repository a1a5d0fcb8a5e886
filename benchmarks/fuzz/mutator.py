"""Mutations of valid requests, and the deterministic case stream built from them.

Case `i` of seed `s` is drawn from its own `random.Random(f"{s}/{i}")`, so it does not depend on
how many cases ran before it: `--count 150` is a prefix of `--seconds 60` with the same seed, and
`--case i` replays one case alone. The first `len(SEEDS)` cases are the unmutated seeds (every
server must agree on those), each later case applies one to three mutations to a seed drawn at
random and may split the result into several writes.

Mutations are structural where framing lives (header lines, Content-Length values, chunk sizes,
separators) and blind elsewhere (bit flips, inserted, deleted and duplicated bytes).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.fuzz.corpus import SEEDS

MAX_PARTS = 4
# Bytes that matter to an HTTP/1.1 parser: separators, line ends, NUL, other controls, obs-text.
INTERESTING = b'\r\n \t\x00\x01\x08\x0b\x0c\x1f\x7f\x80\xa0\xff:;,="\\/?#%'
INJECTIONS: tuple[tuple[str, bytes], ...] = (
    ("CR", b"\r"), ("LF", b"\n"), ("CRLF", b"\r\n"), ("SP", b" "), ("TAB", b"\t"),
    ("NUL", b"\x00"), ("SOH", b"\x01"), ("VT", b"\x0b"), ("FF", b"\x0c"), ("DEL", b"\x7f"),
    ("NBSP", b"\xa0"), ("CRCRLF", b"\r\r\n"),
)  # fmt: skip
_CONTENT_LENGTH_VALUE = re.compile(rb"(?i)content-length[ \t]*:[ \t]*([0-9]+)")
_CHUNK_SIZE = re.compile(rb"(?<=\n)([0-9A-Fa-f]+)(?=[;\r\n])")
_WORD = re.compile(rb"[A-Za-z][A-Za-z-]*")
_STRUCTURAL = re.compile(rb"[: \r\n;,/]")


@dataclass(frozen=True)
class Case:
    """One fuzz input: the writes a client makes on a fresh connection, and how they were made."""

    seed: int
    index: int
    origin: str  # the corpus seed it was made from
    mutations: tuple[str, ...]  # human-readable, in the order applied
    parts: tuple[bytes, ...]  # the writes, in order; never empty

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)

    @property
    def case_id(self) -> str:
        return f"{self.seed}:{self.index}"


Mutation = Callable[[random.Random, bytes], tuple[bytes, str]]


def _pos(rng: random.Random, data: bytes, *, end: bool = True) -> int:
    return rng.randrange(len(data) + (1 if end else 0)) if data else 0


def flip(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    if not data:
        return insert(rng, data)
    i, bit = _pos(rng, data, end=False), rng.randrange(8)
    new = data[i] ^ (1 << bit)
    return data[:i] + bytes([new]) + data[i + 1 :], f"flip@{i}:{data[i]:#04x}->{new:#04x}"


def insert(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    i = _pos(rng, data)
    byte = rng.choice(INTERESTING) if rng.random() < 0.7 else rng.randrange(256)
    return data[:i] + bytes([byte]) + data[i:], f"insert@{i}:{byte:#04x}"


def delete(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    if not data:
        return insert(rng, data)
    i = _pos(rng, data, end=False)
    n = min(rng.randint(1, 4), len(data) - i)
    return data[:i] + data[i + n :], f"delete@{i}+{n}"


def duplicate(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    if not data:
        return insert(rng, data)
    i = _pos(rng, data, end=False)
    n = min(rng.randint(1, 16), len(data) - i)
    return data[: i + n] + data[i : i + n] + data[i + n :], f"duplicate@{i}+{n}"


def duplicate_header(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Repeat one header line (Host, Content-Length, Transfer-Encoding, Connection...)."""
    head_end = data.find(b"\r\n\r\n")
    first_end = data.find(b"\r\n")
    if head_end < 0 or first_end >= head_end:
        return duplicate(rng, data)
    lines = data[first_end + 2 : head_end].split(b"\r\n")
    k = rng.randrange(len(lines))
    at = first_end + 2 + sum(len(line) + 2 for line in lines[: k + 1])
    line = lines[k] + b"\r\n"
    name = lines[k].split(b":", 1)[0].decode("latin-1")
    return data[:at] + line + data[at:], f"duplicate-header:{name}"


def inject(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """CR, LF, space, TAB, NUL or another control byte next to a separator, where parsers
    disagree most (or anywhere, a third of the time)."""
    label, byte = rng.choice(INJECTIONS)
    spots = [m.start() + rng.randrange(2) for m in _STRUCTURAL.finditer(data)]
    i = rng.choice(spots) if spots and rng.random() < 0.67 else _pos(rng, data)
    return data[:i] + byte + data[i:], f"inject@{i}:{label}"


def change_case(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Upper, lower, swapped or title case of one word: a method, a header name, `chunked`."""
    words = list(_WORD.finditer(data))
    if not words:
        return flip(rng, data)
    m = rng.choice(words)
    word = m.group()
    variants = {"upper": word.upper(), "lower": word.lower(), "swap": word.swapcase(),
                "title": word.title()}  # fmt: skip
    changed = [how for how, new in variants.items() if new != word] or ["swap"]
    how = rng.choice(changed)
    new = variants[how]
    return data[: m.start()] + new + data[m.end() :], f"case:{word.decode()}->{how}"


def _number_variants(value: int, *, hex_digits: bool) -> list[bytes]:
    fmt = (lambda n: f"{n:x}") if hex_digits else str
    text = fmt(value)
    return [
        fmt(value + 1).encode(), fmt(max(value - 1, 0)).encode(), b"0", fmt(value * 2).encode(),
        b"-1", b"+" + text.encode(), b"000" + text.encode(), text.encode() + b" ",
        b" " + text.encode(), text.upper().encode() + b"\t", b"99999999999999999999",
        b"ffffffffffffffff1", b"0x" + f"{value:x}".encode(), text.encode() + b", " + text.encode(),
        text.encode() + b"\x00", b"",
    ]  # fmt: skip


def change_number(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Change a Content-Length value or a chunk size: off by one, zero, huge, signed, padded."""
    head_end = data.find(b"\r\n\r\n")
    spots = [(m.start(1), m.end(1), False) for m in _CONTENT_LENGTH_VALUE.finditer(data)]
    if head_end >= 0:
        spots += [
            (m.start(1), m.end(1), True)
            for m in _CHUNK_SIZE.finditer(data, head_end + 4)
            if m.start(1) > head_end
        ]
    if not spots:
        return duplicate_header(rng, data)
    start, end, hex_digits = rng.choice(spots)
    old = data[start:end]
    new = rng.choice(_number_variants(int(old, 16 if hex_digits else 10), hex_digits=hex_digits))
    kind = "chunk-size" if hex_digits else "content-length"
    return data[:start] + new + data[end:], f"{kind}@{start}:{old.decode()}->{new!r}"


MUTATIONS: tuple[Mutation, ...] = (
    flip, insert, delete, duplicate, duplicate_header, inject, change_case, change_number,
)  # fmt: skip


def split(rng: random.Random, data: bytes) -> tuple[bytes, ...]:
    """Cut `data` into 2 to MAX_PARTS non-empty writes at random points."""
    if len(data) < 2:
        return (data,)
    cuts = sorted(
        rng.sample(range(1, len(data)), min(rng.randint(1, MAX_PARTS - 1), len(data) - 1))
    )
    bounds = [0, *cuts, len(data)]
    return tuple(data[a:b] for a, b in zip(bounds, bounds[1:], strict=False))


def make_case(seed: int, index: int) -> Case:
    """Case `index` of the stream of `seed`: the same on every run, machine and Python 3.11+."""
    if index < len(SEEDS):
        origin = SEEDS[index]
        return Case(seed, index, origin.name, (), (origin.data,))
    rng = random.Random(f"keepalive-bench-fuzz/{seed}/{index}")
    origin = rng.choice(SEEDS)
    data, applied = origin.data, []
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
        data, what = rng.choice(MUTATIONS)(rng, data)
        applied.append(what)
    parts: tuple[bytes, ...] = (data,)
    if rng.random() < 0.3:
        parts = split(rng, data)
        applied.append(f"split:{'+'.join(str(len(p)) for p in parts)}")
    if not data:
        parts = (b"\r\n",)  # an empty write is no input at all; a blank line is
        applied.append("empty->CRLF")
    return Case(seed, index, origin.name, tuple(applied), parts)
