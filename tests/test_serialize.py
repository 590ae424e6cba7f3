"""xdsi.ebxml.serialize: the fast path (lxml's serializer + text checks) writes exactly what the element
walker writes, or steps aside."""

from __future__ import annotations

import pytest
from lxml import etree

from tests.conftest import SHARED, need
from xdsi.ebxml import serialize
from xdsi.ebxml.namespaces import RIM
from xdsi.xmlparse import MalformedXML, parse_xml

MESSAGES = SHARED / "messages"


def _slow(el: etree._Element) -> str:
    out: list[str] = []
    tail, el.tail = el.tail, None
    try:
        serialize._write(el, out)
    finally:
        el.tail = tail
    return "".join(out)


def _objects(root: etree._Element) -> list[etree._Element]:
    kinds = ("ExtrinsicObject", "RegistryPackage", "Association", "Classification", "ExternalIdentifier")
    return [el for el in root.iter() if isinstance(el.tag, str) and etree.QName(el).localname in kinds]


def test_fast_path_equals_walker_on_every_shared_submission() -> None:
    need(MESSAGES.is_dir(), "conformance messages not found at %s" % MESSAGES)
    checked = fast = 0
    for path in sorted(MESSAGES.glob("*/*.xml")):
        try:
            root = parse_xml(path.read_bytes())
        except MalformedXML:
            continue  # hostile-input cases
        for el in _objects(root):
            got = serialize._fast_fragment(el)
            checked += 1
            if got is not None:
                fast += 1
                assert got == _slow(el), "%s: %s" % (path.name, el.get("id"))
    assert checked > 1000 and fast > checked * 0.9, (checked, fast)


WRAP = '<r xmlns:rim="%s" xmlns:x="urn:x" %%s>%%s</r>' % RIM


@pytest.mark.parametrize(
    ("decls", "inner", "fast"),
    [
        ("", '<rim:Slot name="a"><rim:ValueList>\n  <rim:Value>v</rim:Value>\n</rim:ValueList></rim:Slot>', True),
        ("", '<rim:LocalizedString xml:lang="en" charset="UTF-8" value="a &gt; b"/>', True),
        ("", '<rim:Value>  </rim:Value>', False),  # whitespace-only leaf: kept by the walker
        ("", '<rim:Slot name="a"><rim:ValueList><rim:Value> x </rim:Value></rim:ValueList></rim:Slot>', True),
        ("", '<rim:Slot name="a"><x:Other/></rim:Slot>', False),  # another namespace
        ("", '<rim:Slot name="a" x:attr="1"/>', False),  # namespaced attribute
        ("", '<rim:Slot name="a"><!-- c --><rim:ValueList/></rim:Slot>', False),
        ('xmlns="urn:default"', '<rim:Slot name="a"><Value/></rim:Slot>', False),  # unprefixed, namespaced
        ("", '<rim:Slot name="a"><Value>no namespace</Value></rim:Slot>', True),
        ("", '<rim:Slot xmlns:rim="urn:not-rim" name="a"/>', False),
        ("", '<rim:Slot name="xmlns value"/>', False),  # a false alarm only costs the slow path
    ],
)
def test_fast_path_steps_aside_when_it_would_differ(decls: str, inner: str, fast: bool) -> None:
    el = etree.fromstring((WRAP % (decls, inner)).encode())[0]
    got = serialize._fast_fragment(el)
    assert (got is not None) == fast
    assert serialize.fragment(el) == (got if fast else _slow(el))
    reparsed = etree.fromstring(('<w xmlns:rim="%s">%s</w>' % (RIM, serialize.fragment(el))).encode())[0]
    if etree.QName(el).namespace == RIM:
        assert etree.QName(reparsed).namespace == RIM
