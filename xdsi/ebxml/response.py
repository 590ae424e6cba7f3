"""``rs:RegistryResponse`` and ``rs:RegistryErrorList`` (ebRS 3.0, ITI TF-2x Appendix V)."""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import quoteattr

from xdsi.metadata import vocabulary as v
from xdsi.validate.errors import RegistryError

_RS_DECL = 'xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"'


def response_status(errors: Sequence[RegistryError], *, partial: bool = False) -> str:
    """Failure if any Error-severity entry (PartialSuccess when ``partial``), else Success."""
    if any(e.is_error for e in errors):
        return v.RESPONSE_PARTIAL_SUCCESS if partial else v.RESPONSE_FAILURE
    return v.RESPONSE_SUCCESS


def error_list(errors: Sequence[RegistryError], *, declare_ns: bool = False) -> str:
    """``<rs:RegistryErrorList>`` text, or "" when there are no errors."""
    if not errors:
        return ""
    items = "".join(
        "<rs:RegistryError errorCode=%s codeContext=%s location=%s severity=%s/>"
        % (quoteattr(e.code), quoteattr(e.message), quoteattr(e.location), quoteattr(e.severity))
        for e in errors
    )
    decl = " " + _RS_DECL if declare_ns else ""
    worst = v.SEVERITY_ERROR if any(e.is_error for e in errors) else v.SEVERITY_WARNING
    return "<rs:RegistryErrorList%s highestSeverity=%s>%s</rs:RegistryErrorList>" % (decl, quoteattr(worst), items)


def registry_response(errors: Sequence[RegistryError] = (), *, status: str | None = None) -> bytes:
    """A complete ``<rs:RegistryResponse>`` element as bytes."""
    status = status or response_status(errors)
    body = error_list(errors)
    if body:
        return ("<rs:RegistryResponse %s status=%s>%s</rs:RegistryResponse>" % (_RS_DECL, quoteattr(status), body)).encode()
    return ("<rs:RegistryResponse %s status=%s/>" % (_RS_DECL, quoteattr(status))).encode()
