"""A small SOAP 1.2 + WS-Addressing client for our own tools (demo, publisher, tests, benchmarks).

Builds the request envelope IHE requires (ITI TF-2x Appendix V: wsa:Action and wsa:To with
mustUnderstand, wsa:MessageID, anonymous wsa:ReplyTo) and returns the response Body child.
"""

from __future__ import annotations

import copy
import uuid

import httpx
from lxml import etree

from xdsi.ebxml.namespaces import SOAP12, WSA, q

ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


class SoapCallError(RuntimeError):
    """The peer answered with a SOAP Fault or with something that is not SOAP."""


def request_envelope(body: etree._Element, action: str, to: str, message_id: str | None = None) -> etree._Element:
    """A SOAP 1.2 envelope around a copy of ``body`` with the WS-Addressing headers."""
    env = etree.Element(q(SOAP12, "Envelope"), nsmap={"soap": SOAP12, "wsa": WSA})
    header = etree.SubElement(env, q(SOAP12, "Header"))
    must = {q(SOAP12, "mustUnderstand"): "true"}
    etree.SubElement(header, q(WSA, "Action"), must).text = action
    etree.SubElement(header, q(WSA, "MessageID")).text = message_id or f"urn:uuid:{uuid.uuid4()}"
    etree.SubElement(etree.SubElement(header, q(WSA, "ReplyTo")), q(WSA, "Address")).text = ANONYMOUS
    etree.SubElement(header, q(WSA, "To"), must).text = to
    etree.SubElement(env, q(SOAP12, "Body")).append(copy.deepcopy(body))
    return env


def body_of(content: bytes) -> etree._Element:
    """The Body child of a SOAP 1.2 response (plain XML; MTOM responses are read by :mod:`xdsi.soap.mtom`)."""
    env = etree.fromstring(content, _PARSER)
    body = env.find(q(SOAP12, "Body"))
    if body is None or len(body) == 0:
        raise SoapCallError("response has no SOAP Body child")
    return body[0]


def call(url: str, action: str, body: etree._Element, *, client: httpx.Client | None = None,
         timeout: float = 30) -> etree._Element:
    """POST ``body`` as a SOAP 1.2 request and return the response Body child. Faults raise SoapCallError."""
    data = etree.tostring(request_envelope(body, action, url), xml_declaration=True, encoding="UTF-8")
    headers = {"Content-Type": f'application/soap+xml; charset=UTF-8; action="{action}"'}
    if client is None:
        with httpx.Client(timeout=timeout) as c:
            resp = c.post(url, content=data, headers=headers)
    else:
        resp = client.post(url, content=data, headers=headers)
    result = body_of(resp.content)
    if result.tag == q(SOAP12, "Fault"):
        raise SoapCallError("SOAP fault: " + " ".join(result.itertext()).strip())
    return result
