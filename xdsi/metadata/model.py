"""XDS metadata objects (ITI TF-3 4.2.3), as plain dataclasses.

Attribute names follow the Technical Framework (``patientId`` -> ``patient_id``). Values stay strings in
their wire form (DTM times such as ``20041224``, CX patient ids): the validators in :mod:`xdsi.validate`
judge them and the registry indexes them. ``source`` keeps the ebRIM element the object was read from, so
the registry can store exactly what was submitted (extra metadata included) after assigning ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xdsi.metadata import vocabulary as v


@dataclass(frozen=True)
class Code:
    """A coded value: Classification ``nodeRepresentation`` + ``codingScheme`` slot + Name."""

    code: str
    scheme: str
    display: str = ""

    def key(self) -> str:
        """``code^^scheme``: the form ITI-18 code parameters use."""
        return f"{self.code}^^{self.scheme}"


@dataclass
class Author:
    """One author Classification (ITI TF-3 4.2.3.1.4): a person and/or institution with roles."""

    person: str = ""
    institutions: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    specialties: list[str] = field(default_factory=list)
    telecommunications: list[str] = field(default_factory=list)
    id: str = ""


@dataclass
class RegistryObject:
    """What DocumentEntry, SubmissionSet, Folder and Association share."""

    id: str = ""  # entryUUID; may be symbolic (not urn:uuid:) in a submission until the registry assigns one
    lid: str = ""  # logicalId (Metadata Update); defaults to id
    version: str = ""  # VersionInfo/@versionName
    status: str = ""  # availabilityStatus; assigned by the registry
    home: str = ""  # homeCommunityId
    #: Slots that are not XDS attributes, by name. Kept and returned as submitted (extra metadata).
    extra_slots: dict[str, list[str]] = field(default_factory=dict)
    source: Any = field(default=None, repr=False, compare=False)  # the lxml element read from, if any

    @property
    def is_uuid(self) -> bool:
        return self.id.startswith("urn:uuid:")


@dataclass
class DocumentEntry(RegistryObject):
    """XDSDocumentEntry: an ExtrinsicObject (ITI TF-3 4.2.3.2)."""

    object_type: str = v.STABLE_DOCUMENT_ENTRY
    mime_type: str = ""
    unique_id: str = ""
    patient_id: str = ""
    title: str = ""
    comments: str = ""
    hash: str = ""
    size: str = ""
    creation_time: str = ""
    service_start_time: str = ""
    service_stop_time: str = ""
    language_code: str = ""
    repository_unique_id: str = ""
    uri: str = ""
    source_patient_id: str = ""
    source_patient_info: list[str] = field(default_factory=list)
    legal_authenticator: str = ""
    document_availability: str = ""
    class_code: Code | None = None
    format_code: Code | None = None
    healthcare_facility_type_code: Code | None = None
    practice_setting_code: Code | None = None
    type_code: Code | None = None
    confidentiality_codes: list[Code] = field(default_factory=list)
    event_codes: list[Code] = field(default_factory=list)
    authors: list[Author] = field(default_factory=list)
    reference_ids: list[str] = field(default_factory=list)  # urn:ihe:iti:xds:2013:referenceIdList (CXi)
    limited_metadata: bool = False

    @property
    def on_demand(self) -> bool:
        return self.object_type == v.ON_DEMAND_DOCUMENT_ENTRY


@dataclass
class SubmissionSet(RegistryObject):
    """XDSSubmissionSet: a RegistryPackage classified as SubmissionSet (ITI TF-3 4.2.3.3)."""

    unique_id: str = ""
    source_id: str = ""
    patient_id: str = ""
    title: str = ""
    comments: str = ""
    submission_time: str = ""
    content_type_code: Code | None = None
    authors: list[Author] = field(default_factory=list)
    intended_recipients: list[str] = field(default_factory=list)
    limited_metadata: bool = False


@dataclass
class Folder(RegistryObject):
    """XDSFolder: a RegistryPackage classified as Folder (ITI TF-3 4.2.3.4)."""

    unique_id: str = ""
    patient_id: str = ""
    title: str = ""
    comments: str = ""
    last_update_time: str = ""
    codes: list[Code] = field(default_factory=list)
    limited_metadata: bool = False


@dataclass
class Association(RegistryObject):
    """An ebRIM Association (ITI TF-3 4.2.2): HasMember or a document relationship."""

    association_type: str = ""
    source_object: str = ""
    target_object: str = ""
    #: SubmissionSetStatus slot of SubmissionSet-to-DocumentEntry HasMember: "Original" or "Reference".
    submission_set_status: str = ""
    #: Documentation classification of relationship associations (ITI TF-3 4.2.2.2.8).
    documentation: Code | None = None
    #: Slots of UpdateAvailabilityStatus associations (ITI-57).
    original_status: str = ""
    new_status: str = ""
    previous_version: str = ""

    @property
    def is_relationship(self) -> bool:
        return self.association_type in v.RELATIONSHIP_TYPES


@dataclass
class Submission:
    """The contents of one SubmitObjectsRequest (ITI-42 / ITI-41 / RAD-68 / ITI-57)."""

    submission_set: SubmissionSet | None = None
    documents: list[DocumentEntry] = field(default_factory=list)
    folders: list[Folder] = field(default_factory=list)
    associations: list[Association] = field(default_factory=list)
    #: Top-level ObjectRefs (references to objects already in the registry).
    object_refs: list[str] = field(default_factory=list)
    #: Top-level Classifications (e.g. a RegistryPackage classified as SubmissionSet from outside).
    classifications: list[Any] = field(default_factory=list, repr=False)

    def objects(self) -> list[RegistryObject]:
        out: list[RegistryObject] = []
        if self.submission_set is not None:
            out.append(self.submission_set)
        out.extend(self.documents)
        out.extend(self.folders)
        out.extend(self.associations)
        return out

    def by_id(self) -> dict[str, RegistryObject]:
        return {o.id: o for o in self.objects()}
