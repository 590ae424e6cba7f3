"""Stored query parameters (ITI TF-2a 3.18.4.1.2.3): reading the request, value syntax, checking them.

Value syntax (3.18.4.1.2.3.5): a string is quoted, ``'text'`` (a quote inside is doubled: ``''``); a number
is unquoted, ``20041224``; a list is ``('a', 'b', 3)``. A parameter is one or more ``rim:Slot`` elements of
the same name, each with one or more ``rim:Value`` elements.

AND/OR (3.18.4.1.2.3.5): all values of one Slot (in one Value as a list, or in several Value elements) are
OR-ed; several Slots of the same name are AND-ed. Every parameter is therefore kept as a list of Slots,
each a list of values ("and_or": AND over the outer list, OR within each inner one). The conformance data
agree: nist11897 ``classcode_scheme_2`` gives two Values in one Slot for "one of two classCodes", and
``eventcode_multi_select`` / ``and`` give two Slots for "must contain both".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

from xdsi.ebxml.namespaces import QUERY, RIM, q
from xdsi.ebxml.tags import T_SLOT, T_VALUE, T_VALUELIST
from xdsi.metadata import vocabulary as v
from xdsi.metadata.dtm import sortable
from xdsi.validate import errors as e
from xdsi.validate.errors import RegistryError, XDSError

LEAF_CLASS = "LeafClass"
OBJECT_REF = "ObjectRef"

#: availabilityStatus URN -> ``registry_object.status`` code.
STATUS_CODES = {v.STATUS_APPROVED: "A", v.STATUS_DEPRECATED: "D", v.STATUS_SUBMITTED: "S"}
#: DocumentEntry objectType -> ``registry_object.object_type`` code.
DOCUMENT_TYPE_CODES = {v.STABLE_DOCUMENT_ENTRY: "S", v.ON_DEMAND_DOCUMENT_ENTRY: "O"}

AndOr = list[list[str]]


# --- value syntax ---------------------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


class ValueSyntaxError(ValueError):
    """A ``rim:Value`` that is not a quoted string, a number or a parenthesised list of them."""


def parse_value(text: str) -> list[str]:
    """The values coded in one ``rim:Value``: ``'a'`` -> ``['a']``, ``('a', 2)`` -> ``['a', '2']``.

    Raises
    ------
    ValueSyntaxError
        Unbalanced quotes or parentheses, an empty list, an unquoted token that is not a number.
    """
    s = text.strip()
    if not s:
        raise ValueSyntaxError("empty value")
    if s[0] == "(":
        if s[-1] != ")":
            raise ValueSyntaxError("list not closed by ')'")
        items, pos = [], 1
        end = len(s) - 1
        while True:
            item, pos = _item(s, pos, end)
            items.append(item)
            pos = _skip_ws(s, pos, end)
            if pos == end:
                return items
            if s[pos] != ",":
                raise ValueSyntaxError("expected ',' or ')' at position %d" % pos)
            pos += 1
    item, pos = _item(s, 0, len(s))
    if _skip_ws(s, pos, len(s)) != len(s):
        raise ValueSyntaxError("unexpected text after value at position %d" % pos)
    return [item]


def _skip_ws(s: str, pos: int, end: int) -> int:
    while pos < end and s[pos].isspace():
        pos += 1
    return pos


def _item(s: str, pos: int, end: int) -> tuple[str, int]:
    """One quoted string or number starting at ``pos`` (after blanks); returns it and the position after."""
    pos = _skip_ws(s, pos, end)
    if pos >= end:
        raise ValueSyntaxError("missing value at position %d" % pos)
    if s[pos] == "'":
        out, i = [], pos + 1
        while True:
            j = s.find("'", i, end)
            if j < 0:
                raise ValueSyntaxError("unterminated quoted string")
            out.append(s[i:j])
            if j + 1 < end and s[j + 1] == "'":  # '' is an escaped quote
                out.append("'")
                i = j + 2
                continue
            return "".join(out), j + 1
    m = _NUMBER.match(s, pos, end)
    if not m:
        raise ValueSyntaxError("unquoted value %r is not a number (strings must be in single quotes)"
                               % s[pos:end].split(",")[0].strip())
    return m.group(0), m.end()


# --- the request --------------------------------------------------------------------------------------


@dataclass
class QueryRequest:
    """What an ``AdhocQueryRequest`` asks: which query, what to return, and its raw Slots."""

    query_id: str
    return_type: str
    #: Slot name -> one entry per Slot -> the texts of its ``rim:Value`` elements (unparsed: a malformed
    #: value of a parameter the query does not define must not fail the query).
    slots: dict[str, list[list[str]]] = field(default_factory=dict)
    home: str = ""


def read_request(request: etree._Element) -> QueryRequest:
    """Read the query id, returnType and Slots. Raises XDSError (XDSRegistryError) when the structure is
    unusable: not an AdhocQueryRequest, no AdhocQuery, no id, an unknown returnType."""
    if request.tag != q(QUERY, "AdhocQueryRequest"):
        raise XDSError.of(e.XDSRegistryError, "expected query:AdhocQueryRequest, got %s" % request.tag)
    adhoc = request.find(q(RIM, "AdhocQuery"))
    if adhoc is None:
        raise XDSError.of(e.XDSRegistryError, "AdhocQueryRequest has no rim:AdhocQuery element")
    query_id = (adhoc.get("id") or "").strip()
    if not query_id:
        raise XDSError.of(e.XDSUnknownStoredQuery, "rim:AdhocQuery has no id (the stored query UUID)")
    option = request.find(q(QUERY, "ResponseOption"))
    return_type = (option.get("returnType") if option is not None else None) or OBJECT_REF
    if return_type not in (LEAF_CLASS, OBJECT_REF):
        raise XDSError.of(
            e.XDSRegistryError,
            "ResponseOption/@returnType %r is not supported: use LeafClass or ObjectRef" % return_type,
            "returnType",
        )
    slots: dict[str, list[list[str]]] = {}
    for slot in adhoc.iterfind(T_SLOT):
        name = (slot.get("name") or "").strip()
        if not name:
            raise XDSError.of(e.XDSRegistryError, "rim:Slot without a name in AdhocQuery")
        texts = [val.text or "" for val in slot.iterfind("%s/%s" % (T_VALUELIST, T_VALUE))]
        if texts:  # a Slot with no Value at all carries no parameter
            slots.setdefault(name, []).append(texts)
    return QueryRequest(query_id, return_type, slots, adhoc.get("home") or "")


# --- parameter definitions ----------------------------------------------------------------------------

# Value kinds. Each decides how values are checked and turned into what the SQL compares.
STR = "str"  # plain string (ids, patient id, source id)
CODE = "code"  # code^^scheme
TIME = "time"  # DTM, compared as a 14-digit sortable string
STATUS = "status"  # availabilityStatus URN -> A/D/S
DOC_TYPE = "doctype"  # objectType UUID -> S/O
ASSOC_TYPE = "assoctype"  # association type URN
PATTERN = "pattern"  # string with % and _ wildcards (author person)
INT = "int"  # number


@dataclass(frozen=True)
class Param:
    """One stored query parameter: its name (TF spelling), value kind, multiplicity, optionality."""

    name: str
    kind: str = STR
    multi: bool = False
    required: bool = False


@dataclass(frozen=True)
class QuerySpec:
    """The parameters of one stored query. ``one_of`` lists groups of which exactly one must be given
    (e.g. ``$XDSDocumentEntryEntryUUID`` / ``$XDSDocumentEntryUniqueId``)."""

    name: str
    params: tuple[Param, ...]
    one_of: tuple[tuple[str, ...], ...] = ()

    def by_name(self) -> dict[str, Param]:
        return {p.name: p for p in self.params}


@dataclass
class Params:
    """Checked, converted parameter values of one request (only the parameters the query defines)."""

    values: dict[str, AndOr] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.values

    def single(self, name: str) -> str | None:
        got = self.values.get(name)
        return got[0][0] if got else None

    def and_or(self, name: str) -> AndOr | None:
        return self.values.get(name)

    def flat(self, name: str) -> list[str] | None:
        got = self.values.get(name)
        return [x for slot in got for x in slot] if got else None


def check(spec: QuerySpec, req: QueryRequest) -> Params:
    """Parse and check the request's Slots against ``spec``.

    Parameters the query does not define are ignored ("extra, not-understood parameters are always
    accepted"). All problems found are raised together.

    Raises
    ------
    XDSError
        XDSStoredQueryMissingParam (required parameter or alternative missing), XDSStoredQueryParamNumber
        (several values for a single-valued parameter, several alternatives, code/scheme count mismatch),
        XDSRegistryError (malformed value; the message names the parameter).
    """
    errors: list[RegistryError] = []
    out = Params()
    defined = spec.by_name()
    for name, slots in req.slots.items():
        param = defined.get(name)
        if param is None:
            continue
        parsed: AndOr = []
        for texts in slots:
            inner: list[str] = []
            for text in texts:
                try:
                    inner.extend(parse_value(text))
                except ValueSyntaxError as exc:
                    errors.append(RegistryError(
                        e.XDSRegistryError, "%s: malformed value %r: %s" % (name, text, exc), name))
            parsed.append(inner)
        if not param.multi and (len(slots) > 1 or sum(len(t) for t in slots) > 1
                                or sum(len(x) for x in parsed) > 1):
            errors.append(RegistryError(
                e.XDSStoredQueryParamNumber,
                "%s takes a single value but %d were given" % (name, sum(len(x) for x in parsed) or len(slots)),
                name,
            ))
            continue
        try:
            out.values[name] = [[_convert(param, x) for x in inner] for inner in parsed]
        except XDSError as exc:
            errors.extend(exc.errors)
    for p in spec.params:
        if p.required and p.name not in req.slots:
            errors.append(RegistryError(
                e.XDSStoredQueryMissingParam, "%s requires parameter %s" % (spec.name, p.name), p.name))
    for group in spec.one_of:
        given = [n for n in group if n in req.slots]
        if not given:
            errors.append(RegistryError(
                e.XDSStoredQueryMissingParam,
                "%s requires one of %s" % (spec.name, ", ".join(group)), group[0]))
        elif len(given) > 1:
            errors.append(RegistryError(
                e.XDSStoredQueryParamNumber,
                "%s accepts only one of %s, got %s" % (spec.name, ", ".join(group), ", ".join(given)),
                given[1]))
    errors += _check_schemes(spec, req, out)
    errors += _check_metadata_level(out)
    if errors:
        raise XDSError(*errors)
    return out


def _convert(param: Param, value: str) -> str:
    """Check one value of ``param`` and return what the SQL compares with."""
    kind = param.kind
    if kind == CODE:
        code, sep, scheme = value.partition("^^")
        if not sep or not code or not scheme or "^^" in scheme:
            raise XDSError.of(
                e.XDSRegistryError,
                "%s: code %r is not in the form code^^codingScheme" % (param.name, value), param.name)
        return value
    if kind == TIME:
        digits = value.strip()
        if not re.fullmatch(r"\d{4,14}", digits):
            raise XDSError.of(
                e.XDSRegistryError,
                "%s: %r is not a DTM time (YYYY[MM[DD[hh[mm[ss]]]]])" % (param.name, value), param.name)
        return sortable(digits)  # type: ignore[return-value]
    if kind == STATUS:
        # An unknown status matches nothing (it is not an error: nothing has that status).
        return STATUS_CODES.get(value.strip(), "?")
    if kind == DOC_TYPE:
        return DOCUMENT_TYPE_CODES.get(value.strip(), "?")
    if kind == INT:
        if not re.fullmatch(r"[+-]?\d+", value.strip()):
            raise XDSError.of(e.XDSRegistryError, "%s: %r is not an integer" % (param.name, value), param.name)
        return value.strip()
    return value


#: Old (pre-2009) separate scheme parameters: the code parameter they went with.
SCHEME_SUFFIX = "Scheme"


def _check_schemes(spec: QuerySpec, req: QueryRequest, params: Params) -> list[RegistryError]:
    """The retired ``...CodeScheme`` parameters (e.g. ``$XDSDocumentEntryPracticeSettingCodeScheme``).

    Codes must carry their scheme (``code^^scheme``), so these add nothing and are otherwise ignored
    (nist11897 ``practicesetting_scheme``); but a Scheme parameter whose Slots/values do not pair up with
    those of its code parameter is an error (``classcode_scheme_mismatch``), as in IPF.
    """
    out: list[RegistryError] = []
    for p in spec.params:
        if p.kind != CODE:
            continue
        scheme_name = p.name + SCHEME_SUFFIX
        scheme_slots = req.slots.get(scheme_name)
        codes = params.and_or(p.name)
        if not scheme_slots or codes is None:
            continue
        try:
            schemes = [[x for t in texts for x in parse_value(t)] for texts in scheme_slots]
        except ValueSyntaxError as exc:
            out.append(RegistryError(e.XDSRegistryError, "%s: malformed value: %s" % (scheme_name, exc), scheme_name))
            continue
        if [len(s) for s in schemes] != [len(c) for c in codes]:
            out.append(RegistryError(
                e.XDSStoredQueryParamNumber,
                "%s has %d value(s) but %s has %d: each code needs exactly one scheme"
                % (scheme_name, sum(map(len, schemes)), p.name, sum(map(len, codes))),
                scheme_name,
            ))
    return out


METADATA_LEVEL = "$MetadataLevel"


def _check_metadata_level(params: Params) -> list[RegistryError]:
    level = params.single(METADATA_LEVEL)
    if level is not None and level not in ("1", "2"):
        return [RegistryError(
            e.XDSRegistryError, "$MetadataLevel %s is not supported: use 1 or 2" % level, METADATA_LEVEL)]
    return []


def metadata_level(params: Params) -> int:
    """``$MetadataLevel`` (Metadata Update, ITI TF-2a 3.18.4.1.2.3.5.1.1): 1 by default."""
    return int(params.single(METADATA_LEVEL) or 1)
