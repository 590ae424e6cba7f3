"""SOAP 1.2 envelopes with WS-Addressing 1.0 headers (ITI TF-2x Appendix V).

Reading: :func:`parse_envelope` checks the envelope the way SOAP 1.2 Part 1 and the WS-Addressing 1.0
SOAP binding ask and turns every problem into a :class:`SoapFault`. Writing: :func:`build_envelope` splices
an already serialized body into a response envelope with plain byte concatenation, because registry query
responses are assembled from stored XML fragments and must not be parsed again on the hot path.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Iterable
from copy import deepcopy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from lxml import etree

from xdsi.ebxml.namespaces import SOAP11, SOAP12, WSA, WSSE, XOP, q

if TYPE_CHECKING:
    from xdsi.soap.mtom import Attachment

__all__ = [
    "SoapRequest",
    "SoapFault",
    "parse_envelope",
    "build_envelope",
    "new_message_id",
    "WSA_ANONYMOUS",
    "SOAP_FAULT_ACTION",
    "WSA_FAULT_ACTION",
    "FAULT_CODES",
]

#: WS-Addressing 1.0 anonymous address: reply on the HTTP back-channel (the only mode IHE uses).
WSA_ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
#: [action] of faults raised by the SOAP processing model and by the application (WS-Addr SOAP binding 6).
SOAP_FAULT_ACTION = "http://www.w3.org/2005/08/addressing/soap/fault"
#: [action] of the faults WS-Addressing itself defines (subcodes wsa:*), WS-Addr SOAP binding 6.4.
WSA_FAULT_ACTION = "http://www.w3.org/2005/08/addressing/fault"

#: SOAP 1.2 Part 1 section 5.4.6 fault codes.
FAULT_CODES = frozenset({"VersionMismatch", "MustUnderstand", "DataEncodingUnknown", "Sender", "Receiver"})

_ROLE_NEXT = SOAP12 + "/role/next"
_ROLE_ULTIMATE = SOAP12 + "/role/ultimateReceiver"

_ENVELOPE = q(SOAP12, "Envelope")
_HEADER = q(SOAP12, "Header")
_BODY = q(SOAP12, "Body")
_MUST_UNDERSTAND = q(SOAP12, "mustUnderstand")
_ROLE = q(SOAP12, "role")
_WSA_PREFIX = "{%s}" % WSA
_WSSE_SECURITY = q(WSSE, "Security")

#: Prefixes a subcode QName string may use ("wsa:ActionNotSupported").
_KNOWN_PREFIXES = {"wsa": WSA, "env": SOAP12, "soap": SOAP12, "wsse": WSSE, "xop": XOP}

Detail = Union[etree._Element, Iterable[etree._Element], str, None]


def new_message_id() -> str:
    """A fresh ``urn:uuid:`` value for wsa:MessageID."""
    return "urn:uuid:" + str(uuid.uuid4())


@dataclass
class SoapRequest:
    """One received SOAP 1.2 request, after envelope and WS-Addressing checks.

    ``body`` is the single child of ``env:Body``; ``headers`` are all ``env:Header`` children; ``attachments``
    are the MTOM parts by Content-ID (without ``<>``); ``xop`` maps each element that carried an
    ``xop:Include`` to its attachment (filled by the endpoint, see :func:`xdsi.soap.mtom.resolve_xop`).
    """

    action: str
    message_id: str
    reply_to: str
    to: str
    headers: list[etree._Element]
    body: etree._Element
    attachments: dict[str, "Attachment"] = field(default_factory=dict)
    raw_envelope: etree._Element | None = None
    xop: dict[etree._Element, "Attachment"] = field(default_factory=dict)


class SoapFault(Exception):
    """A SOAP 1.2 fault (Part 1 section 5.4) to send back instead of a response.

    Parameters
    ----------
    code : str
        ``Sender``, ``Receiver``, ``MustUnderstand``, ``VersionMismatch`` or ``DataEncodingUnknown``.
    reason : str
        Human readable English text (env:Reason/env:Text).
    subcode : str, optional
        QName string with a known prefix (``"wsa:ActionNotSupported"``) or Clark ``{ns}local``.
    detail : element, elements or str, optional
        Content of env:Detail.
    http_status : int, optional
        Overrides the SOAP 1.2 HTTP binding default (Sender: 400, everything else: 500).
    not_understood : iterable of str
        Clark names of the header blocks behind a MustUnderstand fault (sent as env:NotUnderstood).
    """

    def __init__(
        self,
        code: str,
        reason: str,
        subcode: str | None = None,
        detail: Detail = None,
        *,
        http_status: int | None = None,
        not_understood: Iterable[str] = (),
    ) -> None:
        if code not in FAULT_CODES:
            raise ValueError("unknown SOAP 1.2 fault code %r" % code)
        if subcode is not None:
            _subcode_qname(subcode)  # fail at the raise site, not while answering
        super().__init__(reason)
        self.code = code
        self.subcode = subcode
        self.reason = reason
        self.detail = detail
        self.not_understood = list(not_understood)
        self._http_status = http_status

    @property
    def http_status(self) -> int:
        """HTTP status per SOAP 1.2 Part 2 section 7.5.1.2 unless overridden."""
        if self._http_status is not None:
            return self._http_status
        return 400 if self.code == "Sender" else 500

    @property
    def action(self) -> str:
        """wsa:Action of the fault message."""
        if self.subcode and _subcode_qname(self.subcode)[0] == WSA:
            return WSA_FAULT_ACTION
        return SOAP_FAULT_ACTION

    def __repr__(self) -> str:
        return "SoapFault(%r, %r, subcode=%r)" % (self.code, self.reason, self.subcode)

    # -- well-known faults ------------------------------------------------------------------------
    @classmethod
    def action_not_supported(cls, action: str) -> "SoapFault":
        """WS-Addr SOAP binding 6.4.1.5: no operation at this endpoint for *action*."""
        problem = etree.Element(q(WSA, "ProblemAction"), nsmap={"wsa": WSA})
        etree.SubElement(problem, q(WSA, "Action")).text = action
        return cls(
            "Sender",
            "The [action] %r cannot be processed at the receiver" % action,
            "wsa:ActionNotSupported",
            problem,
        )

    @classmethod
    def header_required(cls, local_name: str) -> "SoapFault":
        """WS-Addr SOAP binding 6.4.1.3: a required wsa header is missing."""
        problem = etree.Element(q(WSA, "ProblemHeaderQName"), nsmap={"wsa": WSA})
        problem.text = "wsa:" + local_name
        return cls(
            "Sender",
            "A required header representing a Message Addressing Property is not present: wsa:%s" % local_name,
            "wsa:MessageAddressingHeaderRequired",
            problem,
        )

    @classmethod
    def invalid_header(cls, local_name: str, why: str) -> "SoapFault":
        """WS-Addr SOAP binding 6.4.1.2: a wsa header cannot be processed."""
        problem = etree.Element(q(WSA, "ProblemHeaderQName"), nsmap={"wsa": WSA})
        problem.text = "wsa:" + local_name
        return cls(
            "Sender",
            "A header representing a Message Addressing Property is not valid: wsa:%s %s" % (local_name, why),
            "wsa:InvalidAddressingHeader",
            problem,
        )

    # -- serialization ----------------------------------------------------------------------------
    def to_bytes(self, relates_to: str | None = None, *, soap11: bool = False) -> bytes:
        """The fault envelope, UTF-8 with XML declaration.

        ``soap11=True`` renders a SOAP 1.1 fault, what SOAP 1.2 Part 1 Appendix A asks for when a
        SOAP 1.1 message meets a SOAP 1.2-only node (VersionMismatch plus an env:Upgrade header).
        """
        if soap11:
            return self._to_soap11_bytes()
        env = etree.Element(_ENVELOPE, nsmap={"env": SOAP12, "wsa": WSA})
        header = etree.SubElement(env, _HEADER)
        action = etree.SubElement(header, q(WSA, "Action"))
        action.set(_MUST_UNDERSTAND, "true")
        action.text = self.action
        etree.SubElement(header, q(WSA, "MessageID")).text = new_message_id()
        if relates_to:
            etree.SubElement(header, q(WSA, "RelatesTo")).text = relates_to
        if self.code == "VersionMismatch":
            _add_upgrade(header)
        for index, clark in enumerate(self.not_understood):
            ns, local = _split_clark(clark)
            nu = etree.SubElement(header, q(SOAP12, "NotUnderstood"), nsmap={"nu%d" % index: ns} if ns else None)
            nu.set("qname", ("nu%d:%s" % (index, local)) if ns else local)
        fault = etree.SubElement(etree.SubElement(env, _BODY), q(SOAP12, "Fault"))
        code = etree.SubElement(fault, q(SOAP12, "Code"))
        etree.SubElement(code, q(SOAP12, "Value")).text = "env:" + self.code
        if self.subcode:
            ns, local = _subcode_qname(self.subcode)
            prefix = {WSA: "wsa", SOAP12: "env"}.get(ns, "sc")
            sub = etree.SubElement(code, q(SOAP12, "Subcode"), nsmap={prefix: ns} if prefix == "sc" else None)
            etree.SubElement(sub, q(SOAP12, "Value")).text = "%s:%s" % (prefix, local)
        reason = etree.SubElement(fault, q(SOAP12, "Reason"))
        text = etree.SubElement(reason, q(SOAP12, "Text"))
        text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        text.text = _xml_safe(self.reason)
        _add_detail(fault, q(SOAP12, "Detail"), self.detail)
        return etree.tostring(env, xml_declaration=True, encoding="UTF-8")

    def _to_soap11_bytes(self) -> bytes:
        env = etree.Element(q(SOAP11, "Envelope"), nsmap={"soap": SOAP11})
        if self.code == "VersionMismatch":
            header = etree.SubElement(env, q(SOAP11, "Header"))
            _add_upgrade(header)
        fault = etree.SubElement(etree.SubElement(env, q(SOAP11, "Body")), q(SOAP11, "Fault"))
        code11 = {"Sender": "Client", "Receiver": "Server"}.get(self.code, self.code)
        etree.SubElement(fault, "faultcode").text = "soap:" + code11
        etree.SubElement(fault, "faultstring").text = _xml_safe(self.reason)
        _add_detail(fault, "detail", self.detail)
        return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def _add_upgrade(header: etree._Element) -> None:
    # SOAP 1.2 Part 1 section 5.4.7: tell the sender which envelope version we speak.
    upgrade = etree.SubElement(header, q(SOAP12, "Upgrade"), nsmap={"env": SOAP12})
    etree.SubElement(upgrade, q(SOAP12, "SupportedEnvelope")).set("qname", "env:Envelope")


def _add_detail(fault: etree._Element, tag: str, detail: Detail) -> None:
    if detail is None:
        return
    box = etree.SubElement(fault, tag)
    if isinstance(detail, str):
        box.text = _xml_safe(detail)
    elif isinstance(detail, etree._Element):
        box.append(_copy(detail))
    else:
        for item in detail:
            box.append(_copy(item))


def _copy(element: etree._Element) -> etree._Element:
    # Appending moves an lxml element; copy so a fault can be serialized twice and the caller's tree survives.
    return deepcopy(element)


# Characters XML 1.0 cannot carry; a fault reason often quotes hostile input.
_NON_XML_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(text: str) -> str:
    return _NON_XML_CHARS.sub("\ufffd", text)


def _split_clark(name: str) -> tuple[str, str]:
    if name.startswith("{"):
        ns, _, local = name[1:].partition("}")
        return ns, local
    return "", name


def _subcode_qname(subcode: str) -> tuple[str, str]:
    if subcode.startswith("{"):
        return _split_clark(subcode)
    prefix, sep, local = subcode.partition(":")
    if not sep or prefix not in _KNOWN_PREFIXES or not local:
        raise ValueError("subcode %r needs a known prefix (%s) or Clark notation" % (subcode, ", ".join(_KNOWN_PREFIXES)))
    return _KNOWN_PREFIXES[prefix], local


# ---------------------------------------------------------------------------------------------------
# Reading


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip() in ("true", "1")


def _text(element: etree._Element) -> str:
    return (element.text or "").strip()


def parse_envelope(
    root: etree._Element,
    attachments: dict[str, "Attachment"] | None = None,
    *,
    understood: Collection[str] = (),
) -> SoapRequest:
    """Check a parsed SOAP 1.2 envelope and extract the WS-Addressing properties.

    Parameters
    ----------
    root : lxml element
        The document element (from :func:`xdsi.xmlparse.parse_xml`).
    attachments : dict, optional
        MTOM parts by Content-ID, stored on the request as is.
    understood : collection of str
        Extra header blocks (Clark names) the caller processes, besides wsa:* and wsse:Security.

    Raises
    ------
    SoapFault
        VersionMismatch for anything but a SOAP 1.2 Envelope; Sender for a bad structure or missing
        wsa:Action; MustUnderstand for mandatory header blocks nobody here processes.
    """
    tag = root.tag
    if tag != _ENVELOPE:
        if not isinstance(tag, str):
            raise SoapFault("Sender", "the message is not an XML element")
        if tag == q(SOAP11, "Envelope"):
            raise SoapFault(
                "VersionMismatch",
                "SOAP 1.1 envelopes are not supported; ITI TF-2x Appendix V requires SOAP 1.2 (namespace %s)" % SOAP12,
            )
        raise SoapFault("VersionMismatch", "the root element %s is not a SOAP 1.2 Envelope ({%s}Envelope)" % (tag, SOAP12))

    header = body_el = None
    for child in root.iterchildren(etree.Element):
        if child.tag == _HEADER and header is None and body_el is None:
            header = child
        elif child.tag == _BODY and body_el is None:
            body_el = child
        else:
            raise SoapFault("Sender", "unexpected element %s in the SOAP Envelope (only Header then Body)" % child.tag)
    if body_el is None:
        raise SoapFault("Sender", "the SOAP Envelope has no Body")
    payload = list(body_el.iterchildren(etree.Element))
    if len(payload) != 1:
        raise SoapFault("Sender", "the SOAP Body must hold exactly one element, found %d" % len(payload))

    headers = list(header.iterchildren(etree.Element)) if header is not None else []
    wsa: dict[str, etree._Element] = {}
    not_understood: list[str] = []
    for block in headers:
        btag = block.tag
        if btag.startswith(_WSA_PREFIX):
            local = btag[len(_WSA_PREFIX):]
            if local in wsa and local != "RelatesTo":
                raise SoapFault.invalid_header(local, "appears more than once")
            wsa.setdefault(local, block)
            continue
        if btag == _WSSE_SECURITY or btag in understood:
            continue
        if _is_true(block.get(_MUST_UNDERSTAND)) and block.get(_ROLE, _ROLE_ULTIMATE).strip() in (
            _ROLE_NEXT,
            _ROLE_ULTIMATE,
        ):
            not_understood.append(btag)
    if not_understood:
        raise SoapFault(
            "MustUnderstand",
            "header block(s) marked mustUnderstand are not understood: %s" % ", ".join(not_understood),
            not_understood=not_understood,
        )

    action_el = wsa.get("Action")
    if action_el is None:
        raise SoapFault.header_required("Action")
    action = _text(action_el)
    if not action:
        raise SoapFault.invalid_header("Action", "is empty")

    reply_to = WSA_ANONYMOUS
    reply_el = wsa.get("ReplyTo")
    if reply_el is not None:
        address = reply_el.find(q(WSA, "Address"))
        if address is None or not _text(address):
            raise SoapFault.invalid_header("ReplyTo", "has no wsa:Address")
        reply_to = _text(address)

    message_id_el = wsa.get("MessageID")
    to_el = wsa.get("To")
    return SoapRequest(
        action=action,
        message_id=_text(message_id_el) if message_id_el is not None else "",
        reply_to=reply_to,
        to=_text(to_el) if to_el is not None else "",
        headers=headers,
        body=payload[0],
        attachments=attachments if attachments is not None else {},
        raw_envelope=root,
    )


# ---------------------------------------------------------------------------------------------------
# Writing (hot path: plain byte concatenation, no tree)

_OPEN = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<env:Envelope xmlns:env="%s" xmlns:wsa="%s"><env:Header>'
    '<wsa:Action env:mustUnderstand="true">' % (SOAP12, WSA)
).encode()
_AFTER_ACTION = b"</wsa:Action><wsa:MessageID>"
_AFTER_MESSAGE_ID = b"</wsa:MessageID>"
_RELATES_OPEN = b"<wsa:RelatesTo>"
_RELATES_CLOSE = b"</wsa:RelatesTo>"
_BODY_OPEN = b"</env:Header><env:Body>"
_CLOSE = b"</env:Body></env:Envelope>"


def _escape(text: str) -> bytes:
    if "&" in text or "<" in text or ">" in text:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.encode("utf-8")


def _strip_declaration(body: bytes) -> bytes | memoryview:
    if body.startswith(b"<?xml"):
        end = body.find(b"?>")
        if end > 0:
            return memoryview(body)[end + 2 :]
    elif body.startswith(b"\xef\xbb\xbf"):
        return _strip_declaration(body[3:])
    return body


def build_envelope(
    action: str,
    relates_to: str | None,
    body: bytes | etree._Element,
    *,
    extra_headers: bytes = b"",
) -> bytes:
    """A response envelope: wsa:Action (mustUnderstand), a new wsa:MessageID, wsa:RelatesTo.

    Parameters
    ----------
    action : str
        wsa:Action of the response.
    relates_to : str or None
        The request's wsa:MessageID (omitted when empty).
    body : bytes or lxml element
        The single Body child. Bytes (UTF-8, optionally with an XML declaration, which is dropped) are
        spliced in verbatim without being parsed: the caller vouches that they are well-formed.
    extra_headers : bytes
        Serialized header blocks appended after the WS-Addressing ones.
    """
    if not isinstance(body, (bytes, bytearray, memoryview)):
        body = etree.tostring(body, encoding="UTF-8", xml_declaration=False)
    else:
        body = _strip_declaration(bytes(body) if not isinstance(body, bytes) else body)
    pieces = [_OPEN, _escape(action), _AFTER_ACTION, new_message_id().encode("ascii"), _AFTER_MESSAGE_ID]
    if relates_to:
        pieces += (_RELATES_OPEN, _escape(relates_to), _RELATES_CLOSE)
    if extra_headers:
        pieces.append(extra_headers)
    pieces += (_BODY_OPEN, body, _CLOSE)
    return b"".join(pieces)
