"""SOAP 1.2 + WS-Addressing 1.0 + MTOM/XOP protocol core shared by every actor (ITI TF-2x Appendix V).

* :mod:`xdsi.soap.envelope` -- reading and writing envelopes, SOAP faults.
* :mod:`xdsi.soap.mtom` -- streaming multipart/related reader and writer, XOP resolution.
* :mod:`xdsi.soap.endpoint` -- the Starlette endpoint that dispatches on wsa:Action.
"""

from xdsi.soap.endpoint import Handler, SoapResponse, soap_content_type, soap_endpoint
from xdsi.soap.envelope import (
    SOAP_FAULT_ACTION,
    WSA_ANONYMOUS,
    WSA_FAULT_ACTION,
    SoapFault,
    SoapRequest,
    build_envelope,
    new_message_id,
    parse_envelope,
)
from xdsi.soap.mtom import (
    Attachment,
    MultipartError,
    PackageTooLarge,
    mtom_response,
    new_content_id,
    read_multipart_related,
    resolve_xop,
    xop_include,
    xop_include_xml,
)

__all__ = [
    "Attachment",
    "Handler",
    "MultipartError",
    "PackageTooLarge",
    "SOAP_FAULT_ACTION",
    "SoapFault",
    "SoapRequest",
    "SoapResponse",
    "WSA_ANONYMOUS",
    "WSA_FAULT_ACTION",
    "build_envelope",
    "mtom_response",
    "new_content_id",
    "new_message_id",
    "parse_envelope",
    "read_multipart_related",
    "resolve_xop",
    "soap_content_type",
    "soap_endpoint",
    "xop_include",
    "xop_include_xml",
]
