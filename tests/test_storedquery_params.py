"""ITI-18 stored query parameters: value syntax, AND/OR structure, checks and their error codes."""

from __future__ import annotations

import pytest
from lxml import etree

from registry.storedquery import specs
from registry.storedquery.params import (
    ValueSyntaxError,
    check,
    metadata_level,
    parse_value,
    read_request,
)
from xdsi.ebxml.namespaces import QUERY, RIM
from xdsi.metadata import vocabulary as v
from xdsi.validate.errors import XDSError

APPROVED = "('%s')" % v.STATUS_APPROVED


def request(query_id: str, *slots: tuple[str, str | list[str]], return_type: str | None = "LeafClass") -> etree._Element:
    """An AdhocQueryRequest; each slot is (name, value text) or (name, [value texts]) (several Values)."""
    option = '<query:ResponseOption returnType="%s"/>' % return_type if return_type else ""
    body = "".join(
        '<rim:Slot name="%s"><rim:ValueList>%s</rim:ValueList></rim:Slot>'
        % (name, "".join("<rim:Value>%s</rim:Value>" % x for x in ([vals] if isinstance(vals, str) else vals)))
        for name, vals in slots
    )
    xml = ('<query:AdhocQueryRequest xmlns:query="%s" xmlns:rim="%s">%s<rim:AdhocQuery id="%s">%s'
           "</rim:AdhocQuery></query:AdhocQueryRequest>" % (QUERY, RIM, option, query_id, body))
    return etree.fromstring(xml.replace("&", "&amp;"))


def checked(query_id: str, *slots):  # type: ignore[no-untyped-def]
    return check(specs.SPECS[query_id], read_request(request(query_id, *slots)))


def error_codes(query_id: str, *slots) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(XDSError) as exc:
        checked(query_id, *slots)
    return [err.code for err in exc.value.errors]


# --- value syntax -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("'single'", ["single"]),
        ("  'padded'  ", ["padded"]),
        ("20041224", ["20041224"]),
        ("-3", ["-3"]),
        ("('a','b')", ["a", "b"]),
        ("( 'a' ,  'b' )", ["a", "b"]),
        ("(1, 2,3)", ["1", "2", "3"]),
        ("('a', 2)", ["a", "2"]),
        ("('only')", ["only"]),
        ("'O''Brien'", ["O'Brien"]),
        ("('it''s', 'x,y')", ["it's", "x,y"]),
        ("''", [""]),
        ("'a^^^&1.2&ISO'", ["a^^^&1.2&ISO"]),
        ("'(not a list)'", ["(not a list)"]),
    ],
)
def test_parse_value(text: str, values: list[str]) -> None:
    assert parse_value(text) == values


@pytest.mark.parametrize(
    "text",
    ["", "   ", "unquoted", "'open", "('a'", "('a' 'b')", "()", "('a',)", "(,'a')", "'a' 'b'", "'a'x",
     "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved", "('a', b)"],
)
def test_parse_value_rejects(text: str) -> None:
    with pytest.raises(ValueSyntaxError):
        parse_value(text)


# --- reading the request ----------------------------------------------------------------------------


def test_read_request_slots_and_return_type() -> None:
    req = read_request(request(v.SQ_FIND_DOCUMENTS, ("$a", "'1'"), ("$a", ["'2'", "'3'"]), ("$b", "4")))
    assert req.query_id == v.SQ_FIND_DOCUMENTS
    assert req.return_type == "LeafClass"
    assert req.slots == {"$a": [["'1'"], ["'2'", "'3'"]], "$b": [["4"]]}


def test_return_type_defaults_to_object_ref() -> None:
    assert read_request(request(v.SQ_FIND_DOCUMENTS, return_type=None)).return_type == "ObjectRef"


def test_unknown_return_type_is_registry_error() -> None:
    with pytest.raises(XDSError) as exc:
        read_request(request(v.SQ_FIND_DOCUMENTS, return_type="RegistryObject"))
    assert exc.value.errors[0].code == "XDSRegistryError"
    assert "returnType" in exc.value.errors[0].message


def test_request_without_adhoc_query() -> None:
    el = etree.fromstring('<query:AdhocQueryRequest xmlns:query="%s"/>' % QUERY)
    with pytest.raises(XDSError) as exc:
        read_request(el)
    assert exc.value.errors[0].code == "XDSRegistryError"


def test_wrong_root_element() -> None:
    with pytest.raises(XDSError):
        read_request(etree.fromstring("<x/>"))


def test_adhoc_query_without_id_is_unknown_query() -> None:
    el = etree.fromstring('<query:AdhocQueryRequest xmlns:query="%s" xmlns:rim="%s"><rim:AdhocQuery/>'
                          "</query:AdhocQueryRequest>" % (QUERY, RIM))
    with pytest.raises(XDSError) as exc:
        read_request(el)
    assert exc.value.errors[0].code == "XDSUnknownStoredQuery"


# --- checks -------------------------------------------------------------------------------------------

PID = ("$XDSDocumentEntryPatientId", "'P1^^^&1.2&ISO'")
STATUS = ("$XDSDocumentEntryStatus", APPROVED)


def test_find_documents_minimal() -> None:
    p = checked(v.SQ_FIND_DOCUMENTS, PID, STATUS)
    assert p.single("$XDSDocumentEntryPatientId") == "P1^^^&1.2&ISO"
    assert p.and_or("$XDSDocumentEntryStatus") == [["A"]]
    assert metadata_level(p) == 1


def test_and_or_structure() -> None:
    """Values of one Slot (one list or several Values) are OR-ed; several Slots are AND-ed."""
    p = checked(
        v.SQ_FIND_DOCUMENTS, PID, STATUS,
        ("$XDSDocumentEntryEventCodeList", ["('a^^s', 'b^^s')", "('c^^s')"]),
        ("$XDSDocumentEntryEventCodeList", "('d^^s')"),
    )
    assert p.and_or("$XDSDocumentEntryEventCodeList") == [["a^^s", "b^^s", "c^^s"], ["d^^s"]]
    assert p.flat("$XDSDocumentEntryEventCodeList") == ["a^^s", "b^^s", "c^^s", "d^^s"]


def test_statuses_and_types_are_coded() -> None:
    p = checked(
        v.SQ_FIND_DOCUMENTS, PID,
        ("$XDSDocumentEntryStatus", "('%s', '%s', 'urn:x:unknown')" % (v.STATUS_APPROVED, v.STATUS_DEPRECATED)),
        ("$XDSDocumentEntryType", "('%s')" % v.ON_DEMAND_DOCUMENT_ENTRY),
    )
    assert p.and_or("$XDSDocumentEntryStatus") == [["A", "D", "?"]]
    assert p.and_or("$XDSDocumentEntryType") == [["O"]]


def test_times_are_padded() -> None:
    p = checked(v.SQ_FIND_DOCUMENTS, PID, STATUS, ("$XDSDocumentEntryCreationTimeFrom", "2004"),
                ("$XDSDocumentEntryCreationTimeTo", "'200501021530'"))
    assert p.single("$XDSDocumentEntryCreationTimeFrom") == "20040000000000"
    assert p.single("$XDSDocumentEntryCreationTimeTo") == "20050102153000"


@pytest.mark.parametrize("value", ["'yesterday'", "'2004-01-01'", "200", "'200401011230001'"])
def test_bad_time_is_registry_error(value: str) -> None:
    assert error_codes(v.SQ_FIND_DOCUMENTS, PID, STATUS, ("$XDSDocumentEntryCreationTimeFrom", value)) == [
        "XDSRegistryError"]


def test_missing_required_params() -> None:
    assert error_codes(v.SQ_FIND_DOCUMENTS, STATUS) == ["XDSStoredQueryMissingParam"]
    assert error_codes(v.SQ_FIND_DOCUMENTS) == ["XDSStoredQueryMissingParam"] * 2
    assert error_codes(v.SQ_GET_ALL, ("$patientId", "'p'")) == ["XDSStoredQueryMissingParam"] * 3
    assert error_codes(v.SQ_GET_ASSOCIATIONS) == ["XDSStoredQueryMissingParam"]
    assert error_codes(v.SQ_GET_RELATED_DOCUMENTS, ("$XDSDocumentEntryEntryUUID", "'u'")) == [
        "XDSStoredQueryMissingParam"]
    assert error_codes(v.SQ_FIND_DOCUMENTS_BY_REFERENCE_ID, PID, STATUS) == ["XDSStoredQueryMissingParam"]


def test_missing_param_message_names_it() -> None:
    with pytest.raises(XDSError) as exc:
        checked(v.SQ_FIND_DOCUMENTS, PID)
    assert "$XDSDocumentEntryStatus" in exc.value.errors[0].message
    assert exc.value.errors[0].location == "$XDSDocumentEntryStatus"


@pytest.mark.parametrize(
    "slots",
    [
        [("$XDSDocumentEntryPatientId", ["'a'", "'b'"])],  # two Value elements
        [("$XDSDocumentEntryPatientId", "('a', 'b')")],  # a list of two
        [("$XDSDocumentEntryPatientId", "'a'"), ("$XDSDocumentEntryPatientId", "'b'")],  # two Slots
    ],
)
def test_single_valued_given_several(slots) -> None:  # type: ignore[no-untyped-def]
    assert error_codes(v.SQ_FIND_DOCUMENTS, STATUS, *slots) == ["XDSStoredQueryParamNumber"]


def test_single_valued_as_list_of_one_is_accepted() -> None:
    p = checked(v.SQ_FIND_DOCUMENTS, ("$XDSDocumentEntryPatientId", "('a')"), STATUS)
    assert p.single("$XDSDocumentEntryPatientId") == "a"


def test_time_is_single_valued() -> None:
    assert error_codes(v.SQ_FIND_DOCUMENTS, PID, STATUS, ("$XDSDocumentEntryCreationTimeFrom", "(2004, 2005)")) == [
        "XDSStoredQueryParamNumber"]


def test_alternatives() -> None:
    uuid = ("$XDSDocumentEntryEntryUUID", "('urn:uuid:1')")
    uid = ("$XDSDocumentEntryUniqueId", "('1.2')")
    assert checked(v.SQ_GET_DOCUMENTS, uuid).flat("$XDSDocumentEntryEntryUUID") == ["urn:uuid:1"]
    assert error_codes(v.SQ_GET_DOCUMENTS, uuid, uid) == ["XDSStoredQueryParamNumber"]
    assert error_codes(v.SQ_GET_DOCUMENTS) == ["XDSStoredQueryMissingParam"]
    assert checked(v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryLogicalID", "('urn:uuid:9')")).has(
        "$XDSDocumentEntryLogicalID")
    assert error_codes(v.SQ_GET_SUBMISSION_SET_AND_CONTENTS, ("$XDSSubmissionSetEntryUUID", "'a'"),
                       ("$XDSSubmissionSetUniqueId", "'b'")) == ["XDSStoredQueryParamNumber"]
    # Single-valued alternatives of GetSubmissionSetAndContents
    assert error_codes(v.SQ_GET_SUBMISSION_SET_AND_CONTENTS, ("$XDSSubmissionSetEntryUUID", "('a', 'b')")) == [
        "XDSStoredQueryParamNumber"]


def test_malformed_value_names_param() -> None:
    with pytest.raises(XDSError) as exc:
        checked(v.SQ_FIND_DOCUMENTS, PID, ("$XDSDocumentEntryStatus", "(Approved)"))
    err = exc.value.errors[0]
    assert err.code == "XDSRegistryError"
    assert "$XDSDocumentEntryStatus" in err.message and err.location == "$XDSDocumentEntryStatus"


def test_extra_params_are_ignored_even_malformed() -> None:
    p = checked(v.SQ_FIND_DOCUMENTS, PID, STATUS, ("$Whatever", "not even (valid"), ("$homeCommunityId", "'urn:oid:1'"))
    assert not p.has("$Whatever")


@pytest.mark.parametrize("code", ["'Dialysis'", "'a^^'", "'^^scheme'", "'a^^b^^c'"])
def test_codes_need_scheme(code: str) -> None:
    assert error_codes(v.SQ_FIND_DOCUMENTS, PID, STATUS, ("$XDSDocumentEntryClassCode", "(%s)" % code)) == [
        "XDSRegistryError"]


def test_old_scheme_param_matching_count_is_ignored() -> None:
    p = checked(v.SQ_FIND_DOCUMENTS, PID, STATUS, ("$XDSDocumentEntryPracticeSettingCode", "('P^^1.2')"),
                ("$XDSDocumentEntryPracticeSettingCodeScheme", "('Connect-a-thon practiceSettingCodes')"))
    assert p.and_or("$XDSDocumentEntryPracticeSettingCode") == [["P^^1.2"]]


def test_old_scheme_param_count_mismatch() -> None:
    assert error_codes(v.SQ_FIND_DOCUMENTS, PID, STATUS, ("$XDSDocumentEntryClassCode", "('a^^s', 'b^^s')"),
                       ("$XDSDocumentEntryClassCodeScheme", "('s')")) == ["XDSStoredQueryParamNumber"]


def test_metadata_level() -> None:
    assert metadata_level(checked(v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryUniqueId", "('1')"),
                                  ("$MetadataLevel", "2"))) == 2
    assert metadata_level(checked(v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryUniqueId", "('1')"),
                                  ("$MetadataLevel", "'1'"))) == 1
    assert error_codes(v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryUniqueId", "('1')"), ("$MetadataLevel", "3")) == [
        "XDSRegistryError"]
    assert error_codes(v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryUniqueId", "('1')"), ("$MetadataLevel", "'two'")) == [
        "XDSRegistryError"]


def test_several_errors_reported_together() -> None:
    codes = error_codes(v.SQ_FIND_DOCUMENTS, ("$XDSDocumentEntryPatientId", "('a','b')"),
                        ("$XDSDocumentEntryClassCode", "('bad')"))
    assert sorted(codes) == ["XDSRegistryError", "XDSStoredQueryMissingParam", "XDSStoredQueryParamNumber"]


def test_every_query_has_a_spec() -> None:
    ids = {getattr(v, n) for n in dir(v) if n.startswith("SQ_")}
    assert ids == set(specs.SPECS)
