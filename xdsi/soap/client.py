"""A small SOAP 1.2 + WS-Addressing client for our own tools (demo, publisher, tests, benchmarks).

Builds the request envelope IHE requires (ITI TF-2x Appendix V: wsa:Action and wsa:To with
mustUnderstand, wsa:MessageID, anonymous wsa:ReplyTo) and returns the response Body child.
"""

from __future__ import annotations

import asyncio
import copy
import os
import uuid
from collections.abc import AsyncIterator

import httpx
from lxml import etree

from xdsi.ebxml.namespaces import SOAP12, WSA, q
from xdsi.soap.mtom import Attachment, mtom_request, read_multipart_related

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


def body_of(content: bytes, content_type: str = "application/soap+xml") -> etree._Element:
    """The Body child of a SOAP 1.2 response, plain or MTOM (whose parts are read in memory here; use
    :func:`call_streaming` for large documents)."""
    if content_type.lower().startswith("multipart/"):
        content, attachments = asyncio.run(_read_package(content_type, content))
        for attachment in attachments.values():
            attachment.delete()
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
    return _checked(body_of(resp.content, resp.headers.get("content-type", "")))


def _checked(result: etree._Element) -> etree._Element:
    if result.tag == q(SOAP12, "Fault"):
        raise SoapCallError("SOAP fault: " + " ".join(result.itertext()).strip())
    return result


async def _read_package(content_type: str, content: bytes) -> tuple[bytes, dict[str, Attachment]]:
    async def chunks() -> AsyncIterator[bytes]:
        yield content

    return await read_multipart_related(content_type, chunks(), max_root_bytes=len(content) + 1)


def call_mtom(url: str, action: str, body: etree._Element, parts: list[tuple[str, str, bytes | os.PathLike]], *,
              client: httpx.Client, timeout: float | None = None) -> etree._Element:
    """POST ``body`` as an MTOM/XOP package whose binary parts (``(content_id, content_type, bytes or
    file path)``, referenced from ``body`` by ``xop:Include``) are streamed from disk, never held in memory."""
    data = etree.tostring(request_envelope(body, action, url), xml_declaration=True, encoding="UTF-8")
    content_type, stream = mtom_request(data, parts, action=action)
    resp = client.post(url, content=stream, headers={"Content-Type": content_type},
                       timeout=timeout if timeout is not None else client.timeout)
    return _checked(body_of(resp.content, resp.headers.get("content-type", "")))


async def call_streaming(url: str, action: str, body: etree._Element, *, spool_dir: str | None = None,
                         timeout: float = 600) -> tuple[etree._Element, dict[str, Attachment]]:
    """POST a plain SOAP request and read an MTOM answer with the streaming reader: the parts are spooled
    to files (with size and SHA-1 computed on the way), so a 600 MB document costs no memory. The caller
    deletes the attachments."""
    data = etree.tostring(request_envelope(body, action, url), xml_declaration=True, encoding="UTF-8")
    headers = {"Content-Type": f'application/soap+xml; charset=UTF-8; action="{action}"'}
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        async with client.stream("POST", url, content=data, headers=headers) as resp:
            content_type = resp.headers.get("content-type", "")
            if content_type.lower().startswith("multipart/"):
                root, attachments = await read_multipart_related(content_type, resp.aiter_bytes(),
                                                                 spool_dir=spool_dir)
            else:
                root, attachments = await resp.aread(), {}
    return _checked(body_of(root)), attachments
