"""Building ``query:AdhocQueryRequest`` elements for ITI-18 stored queries (ITI TF-2a 3.18.4.1.2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lxml import etree

from xdsi.ebxml.namespaces import QUERY, RIM, q
from xdsi.ebxml.tags import T_SLOT, T_VALUE, T_VALUELIST
from xdsi.metadata import vocabulary as v


def quote(value: str) -> str:
    """A stored-query string literal: single quotes, inner quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def value_list(values: Sequence[str]) -> str:
    """``('a','b')``: the OR-list form of a multi-valued parameter."""
    return "(" + ",".join(quote(x) for x in values) + ")"


def adhoc_query(query_id: str, params: Mapping[str, str | Sequence[str]], *,
                return_type: str = "LeafClass") -> etree._Element:
    """An AdhocQueryRequest. Each parameter value is given already formatted (``quote``/``value_list``);
    a sequence gives several ``rim:Value`` elements (AND-ed for multi-valued code parameters)."""
    root = etree.Element(q(QUERY, "AdhocQueryRequest"), nsmap={"query": QUERY, "rim": RIM})
    etree.SubElement(root, q(QUERY, "ResponseOption"), returnComposedObjects="true", returnType=return_type)
    aq = etree.SubElement(root, q(RIM, "AdhocQuery"), id=query_id)
    for name, val in params.items():
        slot = etree.SubElement(aq, T_SLOT, name=name)
        vl = etree.SubElement(slot, T_VALUELIST)
        for item in [val] if isinstance(val, str) else val:
            etree.SubElement(vl, T_VALUE).text = item
    return root


def find_documents(patient_id: str, *, statuses: Sequence[str] = (v.STATUS_APPROVED,),
                   return_type: str = "LeafClass", **extra: str | Sequence[str]) -> etree._Element:
    """FindDocuments for one patient (extra parameters by their ``$``-less names, e.g.
    ``XDSDocumentEntryClassCode="('IMAGES^^1.3.6.1.4.1.19376.1.2.6.1')"``)."""
    params: dict[str, str | Sequence[str]] = {
        "$XDSDocumentEntryPatientId": quote(patient_id),
        "$XDSDocumentEntryStatus": value_list(statuses),
    }
    params.update({"$" + k: val for k, val in extra.items()})
    return adhoc_query(v.SQ_FIND_DOCUMENTS, params, return_type=return_type)
