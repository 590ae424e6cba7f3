"""The parameter tables of the 14 stored queries (ITI TF-2a 3.18.4.1.2.3.7.1 - .14), with the additions of
the Metadata Update (``$MetadataLevel``, ``...LogicalID``, association status) and On-Demand Documents
(``$XDSDocumentEntryType``) options."""

from __future__ import annotations

from registry.storedquery.params import (
    ASSOC_TYPE,
    CODE,
    DOC_TYPE,
    INT,
    METADATA_LEVEL,
    PATTERN,
    STATUS,
    TIME,
    Param,
    QuerySpec,
)
from xdsi.metadata import vocabulary as v

# Parameter names (TF spelling) used by more than one query.
DE_PATIENT_ID = "$XDSDocumentEntryPatientId"
DE_STATUS = "$XDSDocumentEntryStatus"
DE_TYPE = "$XDSDocumentEntryType"
DE_ENTRY_UUID = "$XDSDocumentEntryEntryUUID"
DE_UNIQUE_ID = "$XDSDocumentEntryUniqueId"
DE_LOGICAL_ID = "$XDSDocumentEntryLogicalID"
DE_FORMAT_CODE = "$XDSDocumentEntryFormatCode"
DE_CONFIDENTIALITY_CODE = "$XDSDocumentEntryConfidentialityCode"
DE_EVENT_CODE = "$XDSDocumentEntryEventCodeList"
DE_AUTHOR_PERSON = "$XDSDocumentEntryAuthorPerson"
DE_REFERENCE_ID = "$XDSDocumentEntryReferenceIdList"
SS_PATIENT_ID = "$XDSSubmissionSetPatientId"
SS_STATUS = "$XDSSubmissionSetStatus"
SS_ENTRY_UUID = "$XDSSubmissionSetEntryUUID"
SS_UNIQUE_ID = "$XDSSubmissionSetUniqueId"
SS_AUTHOR_PERSON = "$XDSSubmissionSetAuthorPerson"
FOL_PATIENT_ID = "$XDSFolderPatientId"
FOL_STATUS = "$XDSFolderStatus"
FOL_ENTRY_UUID = "$XDSFolderEntryUUID"
FOL_UNIQUE_ID = "$XDSFolderUniqueId"
FOL_LOGICAL_ID = "$XDSFolderLogicalID"
FOL_CODE_LIST = "$XDSFolderCodeList"
UUID = "$uuid"
PATIENT_ID = "$patientId"
ASSOCIATION_TYPES = "$AssociationTypes"
#: Association status filter. The NIST Metadata Update tests send ``$XDSAssociationStatus``; the shorter
#: ``$AssociationStatus`` is accepted as a synonym.
ASSOCIATION_STATUS = "$XDSAssociationStatus"
ASSOCIATION_STATUS_ALT = "$AssociationStatus"
HOME_COMMUNITY_ID = "$homeCommunityId"

#: Column-valued DocumentEntry code parameters: parameter -> ``registry_object`` column.
DE_CODE_COLUMNS = {
    "$XDSDocumentEntryClassCode": "class_code",
    "$XDSDocumentEntryTypeCode": "type_code",
    "$XDSDocumentEntryPracticeSettingCode": "practice_setting_code",
    "$XDSDocumentEntryHealthcareFacilityTypeCode": "facility_type_code",
    DE_FORMAT_CODE: "format_code",
}
#: DocumentEntry time ranges: (From parameter, To parameter, column).
DE_TIME_RANGES = (
    ("$XDSDocumentEntryCreationTimeFrom", "$XDSDocumentEntryCreationTimeTo", "creation_time"),
    ("$XDSDocumentEntryServiceStartTimeFrom", "$XDSDocumentEntryServiceStartTimeTo", "service_start_time"),
    ("$XDSDocumentEntryServiceStopTimeFrom", "$XDSDocumentEntryServiceStopTimeTo", "service_stop_time"),
)

_COMMON = (
    Param(HOME_COMMUNITY_ID),  # accepted, not used: this registry is one community
    Param(METADATA_LEVEL, INT),
)
_ASSOC_STATUS = (
    Param(ASSOCIATION_STATUS, STATUS, multi=True),
    Param(ASSOCIATION_STATUS_ALT, STATUS, multi=True),
)
_DE_TYPE = Param(DE_TYPE, DOC_TYPE, multi=True)
_DE_CONTENT_FILTERS = (
    Param(DE_FORMAT_CODE, CODE, multi=True),
    Param(DE_CONFIDENTIALITY_CODE, CODE, multi=True),
    _DE_TYPE,
)

_FIND_DOCUMENTS = (
    Param(DE_PATIENT_ID, required=True),
    *(Param(name, CODE, multi=True) for name in DE_CODE_COLUMNS),
    *(Param(name, TIME) for rng in DE_TIME_RANGES for name in rng[:2]),
    Param(DE_EVENT_CODE, CODE, multi=True),
    Param(DE_CONFIDENTIALITY_CODE, CODE, multi=True),
    Param(DE_AUTHOR_PERSON, PATTERN, multi=True),
    Param(DE_STATUS, STATUS, multi=True, required=True),
    _DE_TYPE,
    *_COMMON,
)

FIND_DOCUMENTS = QuerySpec("FindDocuments", _FIND_DOCUMENTS)
FIND_DOCUMENTS_BY_REFERENCE_ID = QuerySpec(
    "FindDocumentsByReferenceId",
    _FIND_DOCUMENTS + (Param(DE_REFERENCE_ID, multi=True, required=True),),
)
FIND_SUBMISSION_SETS = QuerySpec("FindSubmissionSets", (
    Param(SS_PATIENT_ID, required=True),
    Param("$XDSSubmissionSetSourceId", multi=True),
    Param("$XDSSubmissionSetSubmissionTimeFrom", TIME),
    Param("$XDSSubmissionSetSubmissionTimeTo", TIME),
    # TF: single-valued; several values are accepted (OR) rather than refused.
    Param(SS_AUTHOR_PERSON, PATTERN, multi=True),
    Param("$XDSSubmissionSetContentType", CODE, multi=True),
    Param(SS_STATUS, STATUS, multi=True, required=True),
    *_COMMON,
))
FIND_FOLDERS = QuerySpec("FindFolders", (
    Param(FOL_PATIENT_ID, required=True),
    Param("$XDSFolderLastUpdateTimeFrom", TIME),
    Param("$XDSFolderLastUpdateTimeTo", TIME),
    Param(FOL_CODE_LIST, CODE, multi=True),
    Param(FOL_STATUS, STATUS, multi=True, required=True),
    *_COMMON,
))
GET_ALL = QuerySpec("GetAll", (
    Param(PATIENT_ID, required=True),
    Param(DE_STATUS, STATUS, multi=True, required=True),
    Param(SS_STATUS, STATUS, multi=True, required=True),
    Param(FOL_STATUS, STATUS, multi=True, required=True),
    *_DE_CONTENT_FILTERS,
    *_ASSOC_STATUS,
    *_COMMON,
))
GET_DOCUMENTS = QuerySpec(
    "GetDocuments",
    (Param(DE_ENTRY_UUID, multi=True), Param(DE_UNIQUE_ID, multi=True), Param(DE_LOGICAL_ID, multi=True),
     *_COMMON),
    one_of=((DE_ENTRY_UUID, DE_UNIQUE_ID, DE_LOGICAL_ID),),
)
GET_FOLDERS = QuerySpec(
    "GetFolders",
    (Param(FOL_ENTRY_UUID, multi=True), Param(FOL_UNIQUE_ID, multi=True), Param(FOL_LOGICAL_ID, multi=True),
     *_COMMON),
    one_of=((FOL_ENTRY_UUID, FOL_UNIQUE_ID, FOL_LOGICAL_ID),),
)
GET_ASSOCIATIONS = QuerySpec("GetAssociations", (
    Param(UUID, multi=True, required=True), *_ASSOC_STATUS, *_COMMON))
GET_DOCUMENTS_AND_ASSOCIATIONS = QuerySpec(
    "GetDocumentsAndAssociations",
    (Param(DE_ENTRY_UUID, multi=True), Param(DE_UNIQUE_ID, multi=True), *_ASSOC_STATUS, *_COMMON),
    one_of=((DE_ENTRY_UUID, DE_UNIQUE_ID),),
)
GET_SUBMISSION_SETS = QuerySpec("GetSubmissionSets", (
    Param(UUID, multi=True, required=True), *_ASSOC_STATUS, *_COMMON))
GET_SUBMISSION_SET_AND_CONTENTS = QuerySpec(
    "GetSubmissionSetAndContents",
    (Param(SS_ENTRY_UUID), Param(SS_UNIQUE_ID), *_DE_CONTENT_FILTERS, *_ASSOC_STATUS, *_COMMON),
    one_of=((SS_ENTRY_UUID, SS_UNIQUE_ID),),
)
GET_FOLDER_AND_CONTENTS = QuerySpec(
    "GetFolderAndContents",
    (Param(FOL_ENTRY_UUID), Param(FOL_UNIQUE_ID), *_DE_CONTENT_FILTERS, *_ASSOC_STATUS, *_COMMON),
    one_of=((FOL_ENTRY_UUID, FOL_UNIQUE_ID),),
)
GET_FOLDERS_FOR_DOCUMENT = QuerySpec(
    "GetFoldersForDocument",
    (Param(DE_ENTRY_UUID), Param(DE_UNIQUE_ID), *_ASSOC_STATUS, *_COMMON),
    one_of=((DE_ENTRY_UUID, DE_UNIQUE_ID),),
)
GET_RELATED_DOCUMENTS = QuerySpec(
    "GetRelatedDocuments",
    (Param(DE_ENTRY_UUID), Param(DE_UNIQUE_ID), Param(ASSOCIATION_TYPES, ASSOC_TYPE, multi=True, required=True),
     _DE_TYPE, *_ASSOC_STATUS, *_COMMON),
    one_of=((DE_ENTRY_UUID, DE_UNIQUE_ID),),
)

#: Stored query id -> its parameters.
SPECS: dict[str, QuerySpec] = {
    v.SQ_FIND_DOCUMENTS: FIND_DOCUMENTS,
    v.SQ_FIND_DOCUMENTS_BY_REFERENCE_ID: FIND_DOCUMENTS_BY_REFERENCE_ID,
    v.SQ_FIND_SUBMISSION_SETS: FIND_SUBMISSION_SETS,
    v.SQ_FIND_FOLDERS: FIND_FOLDERS,
    v.SQ_GET_ALL: GET_ALL,
    v.SQ_GET_DOCUMENTS: GET_DOCUMENTS,
    v.SQ_GET_FOLDERS: GET_FOLDERS,
    v.SQ_GET_ASSOCIATIONS: GET_ASSOCIATIONS,
    v.SQ_GET_DOCUMENTS_AND_ASSOCIATIONS: GET_DOCUMENTS_AND_ASSOCIATIONS,
    v.SQ_GET_SUBMISSION_SETS: GET_SUBMISSION_SETS,
    v.SQ_GET_SUBMISSION_SET_AND_CONTENTS: GET_SUBMISSION_SET_AND_CONTENTS,
    v.SQ_GET_FOLDER_AND_CONTENTS: GET_FOLDER_AND_CONTENTS,
    v.SQ_GET_FOLDERS_FOR_DOCUMENT: GET_FOLDERS_FOR_DOCUMENT,
    v.SQ_GET_RELATED_DOCUMENTS: GET_RELATED_DOCUMENTS,
}
