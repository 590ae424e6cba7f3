"""Minimal HL7 v2 (ER7, "pipe and hat") message parser and builder.

A message is a list of :class:`Segment`. A segment keeps every field fully decomposed::

    fields[n - 1]          field n (HL7 numbering; for MSH, fields[0] is MSH-1 = the field separator)
      [repetition]         split on the repetition separator (``~``)
        [component]        split on the component separator (``^``)
          [subcomponent]   split on the subcomponent separator (``&``), unescaped text

Delimiters are read from MSH-1/MSH-2 of each message (HL7 v2.5 Ch. 2.5.4), so a sender using
non-default encoding characters is understood; output always reuses the same delimiters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

Subcomponents = list[str]
Repetition = list[Subcomponents]  # components
Field = list[Repetition]  # repetitions

_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}\Z")
_SEGMENT_SEPARATOR = re.compile(r"\r\n|\r|\n")  # HL7 says \r; files and some senders use \n


class HL7ParseError(ValueError):
    """The bytes are not an HL7 v2 ER7 message (no MSH, bad delimiters or segment names)."""


@dataclass(frozen=True)
class Encoding:
    """The five delimiters of a message: MSH-1 and the four MSH-2 encoding characters."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def msh2(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent

    def escape_text(self, text: str) -> str:
        """Replace delimiters in *text* by the escape sequences \\F\\ \\S\\ \\T\\ \\R\\ \\E\\."""
        e = self.escape
        table = {e: f"{e}E{e}", self.field: f"{e}F{e}", self.component: f"{e}S{e}",
                 self.subcomponent: f"{e}T{e}", self.repetition: f"{e}R{e}"}
        return "".join(table.get(ch, ch) for ch in text)

    def unescape_text(self, text: str) -> str:
        """Inverse of :meth:`escape_text`; other sequences (\\H\\, \\X0D\\, ...) are kept verbatim."""
        e = self.escape
        if e not in text:
            return text
        table = {"E": e, "F": self.field, "S": self.component, "T": self.subcomponent, "R": self.repetition}
        out, i = [], 0
        while i < len(text):
            end = text.find(e, i + 1) if text[i] == e else -1
            if end < 0:  # plain character, or an escape without a closing one
                out.append(text[i])
                i += 1
                continue
            code = text[i + 1 : end]
            out.append(table.get(code, text[i : end + 1]))
            i = end + 1
        return "".join(out)


DEFAULT_ENCODING = Encoding()


@dataclass
class Segment:
    """One segment: its name and its fields, ``fields[n - 1]`` being field n."""

    name: str
    fields: list[Field] = field(default_factory=list)

    def field(self, n: int) -> Field:
        """All repetitions of field *n* (1-based); ``[]`` when absent or empty."""
        if n < 1 or n > len(self.fields):
            return []
        f = self.fields[n - 1]
        return [] if f == [[[""]]] else f

    def get(self, n: int, component: int = 1, subcomponent: int = 1, repetition: int = 0) -> str:
        """The unescaped text at field.component.subcomponent (1-based), ``""`` when absent."""
        reps = self.field(n)
        if repetition >= len(reps) or component > len(reps[repetition]):
            return ""
        subs = reps[repetition][component - 1]
        return subs[subcomponent - 1] if subcomponent <= len(subs) else ""

    def set(self, n: int, value: Field) -> None:
        """Set field *n*, padding intermediate empty fields."""
        while len(self.fields) < n:
            self.fields.append([[[""]]])
        self.fields[n - 1] = value


@dataclass
class Message:
    """A parsed HL7 v2 message."""

    segments: list[Segment]
    encoding: Encoding = DEFAULT_ENCODING

    def segment(self, name: str) -> Segment | None:
        """The first segment called *name*, or None."""
        return next((s for s in self.segments if s.name == name), None)

    def get(self, path: str, repetition: int = 0) -> str:
        """Value at a path like ``"MSH-9.2"`` or ``"PID-3.4.2"`` in the first such segment."""
        name, _, rest = path.partition("-")
        seg = self.segment(name)
        nums = [int(p) for p in rest.split(".")] if rest else []
        if seg is None or not nums:
            return ""
        return seg.get(*(nums + [1, 1])[:3], repetition=repetition)

    def encode(self) -> bytes:
        """ER7 bytes, segments terminated by ``\\r`` (UTF-8)."""
        return "".join(format_segment(s, self.encoding) + "\r" for s in self.segments).encode("utf-8")


def parse(data: bytes | str) -> Message:
    """Parse an ER7 message; raises :class:`HL7ParseError` when it is not one."""
    text = data if isinstance(data, str) else _decode(data)
    lines = [ln for ln in _SEGMENT_SEPARATOR.split(text.lstrip(" \t\r\n\x00\ufeff")) if ln.strip()]
    if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 8:
        raise HL7ParseError("message does not start with an MSH segment")
    msh = lines[0]
    fs, enc_chars = msh[3], msh[4:].split(msh[3], 1)[0]
    chars = (enc_chars + DEFAULT_ENCODING.msh2[len(enc_chars):])[:4]
    if len(enc_chars) < 2 or len(set(chars + fs)) != 5 or any(c.isalnum() for c in chars + fs):
        raise HL7ParseError(f"MSH-1/MSH-2 do not define five distinct delimiters: {msh[3:9]!r}")
    enc = Encoding(fs, chars[0], chars[1], chars[2], chars[3])
    segments = []
    for line in lines:
        name, *values = line.split(fs)
        if not _SEGMENT_NAME.match(name):
            raise HL7ParseError(f"invalid segment name {name[:10]!r}")
        if name == "MSH":  # MSH-1 is the separator itself, MSH-2 is taken literally (never unescaped)
            fields = [[[[fs]]], [[[values[0]]]]] + [_parse_field(v, enc) for v in values[1:]]
        else:
            fields = [_parse_field(v, enc) for v in values]
        segments.append(Segment(name, fields))
    return Message(segments, enc)


def _decode(data: bytes) -> str:
    # MSH-18 is rarely trustworthy; UTF-8 covers ASCII, Latin-1 never fails.
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _parse_field(value: str, enc: Encoding) -> Field:
    return [[[enc.unescape_text(s) for s in comp.split(enc.subcomponent)]
             for comp in rep.split(enc.component)]
            for rep in value.split(enc.repetition)]


def format_segment(seg: Segment, enc: Encoding = DEFAULT_ENCODING) -> str:
    """ER7 text of one segment (without terminator); trailing empty parts are dropped."""
    fields = seg.fields
    if seg.name == "MSH":
        head, fields = [seg.name, enc.msh2], fields[2:]
    else:
        head = [seg.name]
    body = [format_field(f, enc) for f in fields]
    while body and not body[-1]:
        body.pop()
    return enc.field.join(head + body)


def format_field(value: Field, enc: Encoding = DEFAULT_ENCODING) -> str:
    """ER7 text of one field, escaping delimiters inside values."""
    def join(sep: str, parts: list[str]) -> str:
        while parts and not parts[-1]:
            parts.pop()
        return sep.join(parts)

    return join(enc.repetition, [
        join(enc.component, [join(enc.subcomponent, [enc.escape_text(s) for s in comp]) for comp in rep])
        for rep in value])


def composite(text: str, *, component: str = "^", subcomponent: str = "&") -> Repetition:
    """Split an unescaped composite like ``"123^^^&1.2.3&ISO"`` (XDS string form of a CX) into components."""
    return [c.split(subcomponent) for c in text.split(component)]


def value(*repetitions: str | Sequence[str | Sequence[str]]) -> Field:
    """Build a field: each repetition is a plain string, or a sequence of components (each a
    string or a sequence of subcomponents). Strings are literal text (escaped on output)."""
    out: Field = []
    for rep in repetitions:
        comps = [rep] if isinstance(rep, str) else list(rep)
        out.append([[c] if isinstance(c, str) else list(c) for c in comps])
    return out or [[[""]]]


def segment(name: str, *fields: Field | str) -> Segment:
    """Build a segment from fields 1..n (a ``str`` is a single literal value)."""
    return Segment(name, [value(f) if isinstance(f, str) else f for f in fields])
