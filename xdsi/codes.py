"""The affinity domain's code list: which (code, codingScheme) pairs each coded XDS attribute accepts.

Read from the NIST toolkit ``codes.xml`` format::

    <Codes>
      <CodeType name="classCode" classScheme="urn:uuid:41a5887f-...">
        <Code code="REPORTS" codingScheme="1.3.6.1.4.1.19376.1.2.6.1" display="Reports"/>
      </CodeType>
      <CodeType name="mimeType"><Code code="text/xml" ext="xml"/></CodeType>
    </Codes>

Attributes are named after the model fields (``class_code``, ``confidentiality_codes``, ``codes`` for the
Folder codeList, ``documentation`` for association documentation, ``mime_type``); the Technical Framework
names of the file (``classCode``, ``eventCodeList``, ``folderCodeList``...) and the classification scheme
UUIDs are accepted as aliases. ``mime_type`` entries have no codingScheme (scheme ``""``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from xdsi.metadata import vocabulary as v
from xdsi.metadata.model import Code

__all__ = ["CodeList", "load", "ATTRIBUTES"]

#: CodeType name in codes.xml -> model attribute.
ATTRIBUTES: dict[str, str] = {
    "classCode": "class_code",
    "confidentialityCode": "confidentiality_codes",
    "eventCodeList": "event_codes",
    "formatCode": "format_code",
    "healthcareFacilityTypeCode": "healthcare_facility_type_code",
    "practiceSettingCode": "practice_setting_code",
    "typeCode": "type_code",
    "contentTypeCode": "content_type_code",
    "folderCodeList": "codes",
    "associationDocumentation": "documentation",
    "mimeType": "mime_type",
}

_BY_SCHEME: dict[str, str] = {
    v.DE_CLASS_CODE: "class_code",
    v.DE_CONFIDENTIALITY_CODE: "confidentiality_codes",
    v.DE_EVENT_CODE: "event_codes",
    v.DE_FORMAT_CODE: "format_code",
    v.DE_HEALTHCARE_FACILITY_TYPE_CODE: "healthcare_facility_type_code",
    v.DE_PRACTICE_SETTING_CODE: "practice_setting_code",
    v.DE_TYPE_CODE: "type_code",
    v.SS_CONTENT_TYPE_CODE: "content_type_code",
    v.FOL_CODE_LIST: "codes",
    v.ASSOCIATION_DOCUMENTATION: "documentation",
}

_ALIASES: dict[str, str] = {**ATTRIBUTES, **_BY_SCHEME, **{a: a for a in ATTRIBUTES.values()}}
# Singular/plural spellings people reach for.
_ALIASES.update({
    "confidentiality_code": "confidentiality_codes",
    "event_code": "event_codes",
    "event_code_list": "event_codes",
    "code_list": "codes",
    "folder_code_list": "codes",
    "association_documentation": "documentation",
    "mimetype": "mime_type",
})


def _attribute(name: str) -> str:
    return _ALIASES.get(name, name)


@dataclass
class CodeList:
    """Accepted codes by model attribute; an attribute without an entry is not restricted."""

    codes: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    #: Display names by (attribute, code, scheme), for building metadata.
    displays: dict[tuple[str, str, str], str] = field(default_factory=dict, repr=False)

    def classify(self, attribute: str) -> set[tuple[str, str]]:
        """The (code, codingScheme) pairs accepted for *attribute* (empty set if unrestricted)."""
        return self.codes.get(_attribute(attribute), set())

    def restricts(self, attribute: str) -> bool:
        """Whether the list has a CodeType for *attribute*."""
        return _attribute(attribute) in self.codes

    def contains(self, attribute: str, code: Code | str) -> bool:
        """Whether *code* is acceptable for *attribute* (True when the list does not cover it).

        A plain string stands for a code without scheme (``mime_type``).
        """
        accepted = self.codes.get(_attribute(attribute))
        if accepted is None:
            return True
        if isinstance(code, str):
            return (code, "") in accepted
        return (code.code, code.scheme) in accepted

    def display(self, attribute: str, code: str, scheme: str = "") -> str:
        """Display name the list gives for a code ("" if none)."""
        return self.displays.get((_attribute(attribute), code, scheme), "")

    @classmethod
    def load(cls, path: str | Path) -> CodeList:
        """Same as the module function :func:`load`."""
        return load(path)

    def add(self, attribute: str, code: str, scheme: str = "", display: str = "") -> None:
        """Accept (*code*, *scheme*) for *attribute* (used by :func:`load` and by tests)."""
        attr = _attribute(attribute)
        self.codes.setdefault(attr, set()).add((code, scheme))
        if display:
            self.displays[(attr, code, scheme)] = display


def load(path: str | Path) -> CodeList:
    """Read a NIST ``codes.xml`` file.

    A CodeType is matched to a model attribute by its name, else by its ``classScheme``; others are kept
    under their name as-is.
    """
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.parse(str(path), parser).getroot()
    out = CodeList()
    for ct in root.iter("CodeType"):
        name = ct.get("name", "")
        attr = _ALIASES.get(name) or _BY_SCHEME.get(ct.get("classScheme", "")) or name
        out.codes.setdefault(attr, set())
        for c in ct.iter("Code"):
            out.add(attr, c.get("code", ""), c.get("codingScheme", ""), c.get("display", ""))
    return out
