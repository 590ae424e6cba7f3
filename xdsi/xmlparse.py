"""Hardened XML parsing for everything that arrives on the wire.

SOAP 1.2 (Part 1, section 5) forbids a document type declaration and processing instructions in a SOAP
message, so both are refused outright; that also closes the XXE and entity-expansion doors. The parser
never touches the network, never loads a DTD and never substitutes entities. libxml2 keeps its own
resource limits: nesting depth 256 and text nodes of 10 MB, both raised (depth 2048, text unbounded) by
``huge_text=True``, which callers use only for inline-base64 documents and always with a body-size cap.
Document size limits are the caller's job (the SOAP endpoint caps the body before parsing).
"""

from __future__ import annotations

import threading

from lxml import etree

__all__ = ["MalformedXML", "parse_xml", "MAX_DEPTH"]

#: Nesting depth libxml2 allows without ``huge_text`` (with it: 2048).
MAX_DEPTH = 256


class MalformedXML(ValueError):
    """The bytes are not a well-formed, acceptable XML document; the message says why."""


def _new_parser(huge: bool) -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        remove_comments=False,
        huge_tree=huge,
    )


# One parser per thread and mode: an lxml parser serializes concurrent use with a lock, and handlers parse
# in the thread pool, so sharing one module-wide instance would make parsing single-threaded.
_local = threading.local()


def _parser(huge: bool) -> etree.XMLParser:
    attr = "huge" if huge else "plain"
    parser = getattr(_local, attr, None)
    if parser is None:
        parser = _new_parser(huge)
        setattr(_local, attr, parser)
    return parser


# libxml2 wording -> what a client can act on.
_REWORDED = (
    ("Excessive depth in document", "XML nesting is deeper than the allowed %d levels" % MAX_DEPTH),
    ("Text node too long", "an XML text node exceeds 10 MB; send large documents as MTOM/XOP attachments"),
    ("Huge input lookup", "an XML token exceeds 10 MB; send large documents as MTOM/XOP attachments"),
    ("Maximum entity amplification", "entity expansion limit exceeded"),
)


def _message(err: etree.XMLSyntaxError) -> str:
    text = str(err)
    for needle, nicer in _REWORDED:
        if needle in text:
            return "%s (%s)" % (nicer, text)
    return "XML is not well-formed: %s" % text


def _end_of_declaration(data: bytes) -> int:
    """Offset just after a leading ``<?xml ...?>`` declaration (0 if there is none)."""
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    if data.startswith(b"<?xml", start):
        end = data.find(b"?>", start)
        return end + 2 if end >= 0 else 0
    return start


def parse_xml(data: bytes, *, huge_text: bool = False) -> etree._Element:
    """Parse *data* and return the root element.

    Parameters
    ----------
    data : bytes
        The complete document (encoding taken from the BOM / XML declaration, UTF-8 by default).
    huge_text : bool
        Lift libxml2's 10 MB text-node limit (for inline base64 documents). Use only behind a size cap.

    Raises
    ------
    MalformedXML
        Not well-formed, too deep, a text node too large, a DOCTYPE, or a processing instruction.
    """
    if not data:
        raise MalformedXML("XML is not well-formed: the document is empty")
    try:
        root = etree.fromstring(data, _parser(huge_text))
    except etree.XMLSyntaxError as err:
        raise MalformedXML(_message(err)) from None
    tree = root.getroottree()
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        raise MalformedXML("a DOCTYPE declaration is not allowed in a SOAP message")
    # Cheap byte scan first: only when "<?" occurs after the declaration (or the document is not in an
    # ASCII-compatible encoding, where the scan means nothing) walk the tree looking for real PIs.
    decl_end = _end_of_declaration(data)
    ascii_compatible = data[:2] not in (b"\xff\xfe", b"\xfe\xff") and b"\x00" not in data[:4]
    if not ascii_compatible or data.find(b"<?", decl_end) >= 0:
        if _has_processing_instruction(root):
            raise MalformedXML("processing instructions are not allowed in a SOAP message")
    return root


def _has_processing_instruction(root: etree._Element) -> bool:
    for sibling in root.itersiblings(preceding=True):
        if isinstance(sibling, etree._ProcessingInstruction):
            return True
    for sibling in root.itersiblings():
        if isinstance(sibling, etree._ProcessingInstruction):
            return True
    return next(root.iter(etree.PI), None) is not None
