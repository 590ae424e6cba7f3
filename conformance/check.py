"""Judge an actor's answer against a case: status, error codes ("any of"), ITI-18 expected contents.

The content vocabulary is the NIST toolkit's ``ExpectedContents`` (``Documents count=2``, ``SSwithOneDoc`` ...);
each word is one small function in :data:`CONTENT_CHECKS`. Unknown words are reported as unchecked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lxml import etree

from xdsi.ebxml.namespaces import QUERY, RIM, RS, XDSB, q
from xdsi.metadata import vocabulary as v

from .cases import Case
from .wire import SoapResponse


@dataclass
class Verdict:
    """Outcome of one case: ``passed`` plus what was seen, for the report."""

    passed: bool
    reason: str = ""
    status: str = ""
    codes: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)


#: The answer each transaction must carry in the SOAP Body.
RESPONSE_ELEMENTS = {
    "ITI-18": q(QUERY, "AdhocQueryResponse"),
    "ITI-43": q(XDSB, "RetrieveDocumentSetResponse"),
    "RAD-69": q(XDSB, "RetrieveDocumentSetResponse"),  # RAD TF-3 4.69: the XDS.b response element
    **{t: q(RS, "RegistryResponse") for t in ("ITI-42", "ITI-41", "RAD-68", "ITI-57", "ITI-62")},
}


def _suffix(urn: str | None) -> str:
    return (urn or "").rsplit(":", 1)[-1]


def response_status(body: etree._Element) -> str:
    """``Success``/``Failure``/``PartialSuccess`` of a RegistryResponse, AdhocQueryResponse or a Retrieve response
    (nested RegistryResponse); ``""`` if there is none."""
    if body.tag == q(XDSB, "RetrieveDocumentSetResponse"):
        nested = body.find(q(RS, "RegistryResponse"))
        return _suffix(nested.get("status")) if nested is not None else ""
    return _suffix(body.get("status"))


def registry_errors(body: etree._Element) -> list[tuple[str, bool]]:
    """``(errorCode, is_error)`` of every ``rs:RegistryError``; severity defaults to Error (ebRS 3.0)."""
    return [(e.get("errorCode", ""), _suffix(e.get("severity") or v.SEVERITY_ERROR) == "Error")
            for e in body.iter(q(RS, "RegistryError"))]


def fault_text(body: etree._Element) -> str:
    """The text of a SOAP Fault (code values and reason), shortened for the report."""
    texts = [t.strip() for t in body.itertext() if t.strip()]
    return " ".join(texts)[:200]


# --- ITI-18 query result ------------------------------------------------------------------------------


@dataclass
class QueryResult:
    """Objects of an ``AdhocQueryResponse`` sorted by kind (ebRIM 3.0, ITI TF-3 4.2.3)."""

    documents: list[etree._Element]
    submission_sets: list[etree._Element]
    folders: list[etree._Element]
    associations: list[etree._Element]
    object_refs: list[etree._Element]

    @classmethod
    def parse(cls, body: etree._Element) -> QueryResult:
        objects = body.find(q(RIM, "RegistryObjectList"))
        children = list(objects) if objects is not None else []
        # A package is a SubmissionSet or Folder by a Classification: nested in it or top-level (classifiedObject).
        nodes: dict[str, set[str]] = {}
        for c in (objects.iter(q(RIM, "Classification")) if objects is not None else ()):
            owner = c.get("classifiedObject") or c.getparent().get("id", "")
            nodes.setdefault(owner, set()).add(c.get("classificationNode", ""))
        packages = [e for e in children if e.tag == q(RIM, "RegistryPackage")]
        return cls(
            documents=[e for e in children if e.tag == q(RIM, "ExtrinsicObject")],
            submission_sets=[p for p in packages if v.SUBMISSION_SET_CLASS_NODE in nodes.get(p.get("id", ""), ())],
            folders=[p for p in packages if v.FOLDER_CLASS_NODE in nodes.get(p.get("id", ""), ())],
            associations=[e for e in children if e.tag == q(RIM, "Association")],
            object_refs=[e for e in children if e.tag == q(RIM, "ObjectRef")],
        )

    def has_member(self, source: etree._Element, target: etree._Element) -> bool:
        return any(a.get("sourceObject") == source.get("id") and a.get("targetObject") == target.get("id")
                   and _suffix(a.get("associationType")) == "HasMember" for a in self.associations)


def _status_is(objs: list[etree._Element], status: str) -> bool:
    return all(_suffix(o.get("status")) == status for o in objs)


def _count(attr: str, label: str) -> Callable[[QueryResult, int | None], str | None]:
    def check(r: QueryResult, n: int | None) -> str | None:
        got = len(getattr(r, attr))
        return None if got == n else f"{label}: expected {n}, got {got}"
    return check


def _object_refs(r: QueryResult, n: int | None) -> str | None:
    # ObjectRef answers (returnType=ObjectRef) carry nothing else (NIST toolkit semantics).
    if len(r.object_refs) != n:
        return f"ObjectRefs: expected {n}, got {len(r.object_refs)}"
    return _none(r, None)


def _none(r: QueryResult, _: int | None) -> str | None:
    counts = {"SubmissionSets": r.submission_sets, "Documents": r.documents, "Folders": r.folders,
              "Associations": r.associations}
    extra = [f"{len(objs)} {name}" for name, objs in counts.items() if objs]
    return f"expected no objects, got {', '.join(extra)}" if extra else None


def _ss_with(docs: int, folders: int, associations: int) -> Callable[[QueryResult, int | None], str | None]:
    """One SubmissionSet holding ``docs`` documents and ``folders`` folders through HasMember associations."""
    def check(r: QueryResult, _: int | None) -> str | None:
        shape = (len(r.submission_sets), len(r.documents), len(r.folders), len(r.associations))
        if shape != (1, docs, folders, associations):
            return (f"expected 1 SubmissionSet, {docs} doc, {folders} folder, {associations} assoc; got "
                    f"{shape[0]}, {shape[1]}, {shape[2]}, {shape[3]}")
        ss = r.submission_sets[0]
        if not all(r.has_member(ss, o) for o in r.documents + r.folders):
            return "missing SubmissionSet HasMember association"
        if folders and docs:
            fol_doc = [a for a in r.associations if a.get("sourceObject") == r.folders[0].get("id")
                       and a.get("targetObject") in {d.get("id") for d in r.documents}]
            if len(fol_doc) != docs:
                return "missing Folder HasMember DocumentEntry association"
            # A document added to a folder in a submission: the SS also holds the Folder-Doc association.
            if not any(r.has_member(ss, a) for a in fol_doc):
                return "missing SubmissionSet HasMember (Folder-DocumentEntry association)"
        if not _status_is(r.submission_sets, "Approved"):
            return "SubmissionSet not Approved"
        return None
    return check


def _all_docs(status: str) -> Callable[[QueryResult, int | None], str | None]:
    """Every DocumentEntry returned has ``status``. Vacuously true for none: the toolkit pairs ``DocApp`` with
    ``Documents count=0`` (e.g. nist20001 step 7, a Metadata Level 1 query after deprecating an association)."""
    def check(r: QueryResult, _: int | None) -> str | None:
        wrong = [d.get("id") for d in r.documents if _suffix(d.get("status")) != status]
        return f"not {status}: {', '.join(wrong)}" if wrong else None
    return check


def _one_doc(status: str) -> Callable[[QueryResult, int | None], str | None]:
    def check(r: QueryResult, _: int | None) -> str | None:
        got = sum(_suffix(d.get("status")) == status for d in r.documents)
        return None if got == 1 else f"expected exactly one {status} DocumentEntry, got {got}"
    return check


def _ss_approved(r: QueryResult, _: int | None) -> str | None:
    if not r.submission_sets:
        return "no SubmissionSet"
    return None if _status_is(r.submission_sets, "Approved") else "SubmissionSet not Approved"


def _fol_approved(r: QueryResult, _: int | None) -> str | None:
    return None if _status_is(r.folders, "Approved") else "Folder not Approved"


def _has_association(kind: str) -> Callable[[QueryResult, int | None], str | None]:
    def check(r: QueryResult, _: int | None) -> str | None:
        found = any(_suffix(a.get("associationType")) == kind for a in r.associations)
        return None if found else f"no {kind} association"
    return check


#: ``expected contents`` word -> check(result, count) returning a mismatch message or None.
CONTENT_CHECKS: dict[str, Callable[[QueryResult, int | None], str | None]] = {
    "Documents": _count("documents", "Documents"),
    "SubmissionSets": _count("submission_sets", "SubmissionSets"),
    "Folders": _count("folders", "Folders"),
    "Associations": _count("associations", "Associations"),
    "ObjectRefs": _object_refs,
    "None": _none,
    "SSwithOneDoc": _ss_with(docs=1, folders=0, associations=1),
    "SSwithTwoDoc": _ss_with(docs=2, folders=0, associations=2),
    "SSwithOneFol": _ss_with(docs=0, folders=1, associations=1),
    # SS->Doc, SS->Fol, Fol->Doc and SS->(Fol->Doc association)
    "SSwithOneDocOneFol": _ss_with(docs=1, folders=1, associations=4),
    "DocApp": _all_docs("Approved"),
    "DocDep": _all_docs("Deprecated"),
    "OneDocApp": _one_doc("Approved"),
    "OneDocDep": _one_doc("Deprecated"),
    "SSApproved": _ss_approved,
    "FolApp": _fol_approved,
    "HasXFRM_RPLC": _has_association("XFRM_RPLC"),
}


def check_contents(body: etree._Element, words: list[str]) -> tuple[list[str], list[str]]:
    """Apply the expected-contents words to a query answer; return ``(mismatches, unchecked words)``."""
    result = QueryResult.parse(body)
    mismatches, unchecked = [], []
    for word in words:
        name, _, arg = word.partition(" count=")
        check = CONTENT_CHECKS.get(name.strip())
        if check is None or (arg and not arg.strip().isdigit()):
            unchecked.append(word)
            continue
        problem = check(result, int(arg) if arg else None)
        if problem:
            mismatches.append(problem)
    return mismatches, unchecked


# --- verdict ----------------------------------------------------------------------------------------------


def judge(case: Case, response: SoapResponse) -> Verdict:
    """Compare an answer with the case's expected status, error codes and (ITI-18) contents."""
    body = response.body
    if body is None:
        return Verdict(False, f"HTTP {response.http_status}: not a SOAP 1.2 response")
    if response.is_fault:
        # A fault is a Failure without RegistryErrors: fine only when no specific code is expected.
        text = fault_text(body)
        if case.expected_status == "Failure" and not case.expected_error_codes:
            return Verdict(True, f"SOAP Fault accepted: {text}", "Failure")
        expected = f"{case.expected_status} {','.join(case.expected_error_codes)}".strip()
        return Verdict(False, f"expected {expected}, got SOAP Fault: {text}", "Failure")

    if not 200 <= response.http_status < 300:  # SOAP 1.2 HTTP binding: only a Fault comes with 4xx/5xx
        return Verdict(False, f"HTTP {response.http_status} with a {etree.QName(body).localname} (not a Fault)")
    wanted = RESPONSE_ELEMENTS.get(case.transaction)
    if wanted and body.tag != wanted:
        return Verdict(False, f"expected {etree.QName(wanted).localname}, got {etree.QName(body).localname}")
    status = response_status(body)
    errors = registry_errors(body)
    codes = [code for code, _ in errors]
    error_codes = [code for code, is_error in errors if is_error]
    seen = f"{status or 'no status'}" + (f" [{', '.join(codes)}]" if codes else "")
    if status != case.expected_status:
        return Verdict(False, f"expected {case.expected_status}, got {seen}", status, codes)
    if case.expected_status == "Success":
        if error_codes:
            return Verdict(False, f"Success with Error-severity RegistryError: {', '.join(error_codes)}",
                           status, codes)
    elif case.expected_error_codes:
        if not set(codes) & set(case.expected_error_codes):
            return Verdict(False, f"expected one of {', '.join(case.expected_error_codes)}, got {seen}",
                           status, codes)
    elif not error_codes:
        return Verdict(False, f"{status} without an Error-severity RegistryError", status, codes)

    unchecked: list[str] = []
    if case.expected_contents and body.tag == q(QUERY, "AdhocQueryResponse"):
        mismatches, unchecked = check_contents(body, case.expected_contents)
        if mismatches:
            return Verdict(False, "contents: " + "; ".join(mismatches), status, codes, unchecked)
    return Verdict(True, seen, status, codes, unchecked)
