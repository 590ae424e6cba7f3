"""``query:AdhocQueryResponse`` (ebRS 3.0 query.xsd, ITI TF-2a 3.18.4.1.3), written as text.

LeafClass results are the stored ``rim:`` fragments spliced in unchanged under a root that declares
``xmlns:rim`` once: no parse, no re-serialization.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

from xdsi.ebxml.namespaces import QUERY, RIM, RS
from xdsi.ebxml.response import error_list, response_status
from xdsi.validate.errors import RegistryError

_OPEN = '<query:AdhocQueryResponse xmlns:query="%s" xmlns:rim="%s" xmlns:rs="%s" status=' % (QUERY, RIM, RS)
_CLOSE = "</query:AdhocQueryResponse>"


def object_ref(row: Any) -> str:
    """``<rim:ObjectRef id=".."/>``, with ``home`` when the object has a homeCommunityId."""
    if row.home:
        return "<rim:ObjectRef id=%s home=%s/>" % (quoteattr(row.id), quoteattr(row.home))
    return "<rim:ObjectRef id=%s/>" % quoteattr(row.id)


def adhoc_query_response(
    rows: Iterable[Any] = (), *, leaf_class: bool = False, errors: Sequence[RegistryError] = ()
) -> bytes:
    """The response for ``rows`` (objects with ``id``, ``home`` and, for LeafClass, ``xml``).

    Status is Failure when any error has Error severity, else Success; the RegistryErrorList precedes
    the (then empty) RegistryObjectList, as the schema orders them.
    """
    # One list, one join, one encode: a LeafClass answer is ~7 KB per entry, and every extra copy of a
    # few hundred KB costs more than the SQL that selected it.
    parts = [_OPEN, quoteattr(response_status(errors)), ">", error_list(errors), "<rim:RegistryObjectList>"]
    start = len(parts)
    if leaf_class:
        parts.extend(row.xml for row in rows)
    else:
        parts.extend(object_ref(row) for row in rows)
    if len(parts) == start:
        parts[-1] = "<rim:RegistryObjectList/>"
    else:
        parts.append("</rim:RegistryObjectList>")
    parts.append(_CLOSE)
    return "".join(parts).encode("utf-8")
