"""Table definitions. Alembic migrations in :mod:`registry.migrations` must match these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

#: Kinds of registry objects (column ``registry_object.kind``).
DOCUMENT_ENTRY = "DE"
SUBMISSION_SET = "SS"
FOLDER = "FD"
ASSOCIATION = "AS"

#: Patients of the affinity domain, fed by ITI-8. ``merged_into`` is set for ids subsumed by an A40 merge.
patient = Table(
    "patient",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("patient_id", String, nullable=False, unique=True),  # CX: id^^^&oid&ISO
    Column("demographics", Text, nullable=False, default="{}"),  # JSON: name, birth date, sex, other ids
    Column("merged_into", String, nullable=True),
    Column("updated", String, nullable=False),  # ISO 8601 UTC
)

#: Every DocumentEntry, SubmissionSet, Folder and Association, one row each.
#: Time columns hold DTM values right-padded with zeros to 14 digits, so string order is time order.
#: Code columns hold ``code^^scheme`` (the form of ITI-18 code parameters).
registry_object = Table(
    "registry_object",
    metadata,
    Column("pk", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("id", String, nullable=False, unique=True),  # entryUUID
    Column("lid", String, nullable=False),  # logicalId
    Column("version", Integer, nullable=False, default=1),
    Column("kind", String(2), nullable=False),
    Column("status", String(1), nullable=False),  # A(pproved), D(eprecated), S(ubmitted)
    Column("patient_id", String, nullable=True),
    Column("unique_id", String, nullable=True),
    Column("home", String, nullable=True),
    # DocumentEntry
    Column("object_type", String(1), nullable=True),  # S(table) / O(n-demand)
    Column("class_code", String, nullable=True),
    Column("type_code", String, nullable=True),
    Column("format_code", String, nullable=True),
    Column("practice_setting_code", String, nullable=True),
    Column("facility_type_code", String, nullable=True),
    Column("creation_time", String(14), nullable=True),
    Column("service_start_time", String(14), nullable=True),
    Column("service_stop_time", String(14), nullable=True),
    Column("hash", String, nullable=True),
    Column("size", BigInteger, nullable=True),
    Column("repository_unique_id", String, nullable=True),
    Column("offline", Boolean, nullable=True),  # documentAvailability Offline (hidden at Metadata Level 1)
    # SubmissionSet
    Column("source_id", String, nullable=True),
    Column("submission_time", String(14), nullable=True),
    Column("content_type_code", String, nullable=True),
    # Folder
    Column("last_update_time", String(14), nullable=True),
    # Association
    Column("assoc_type", String, nullable=True),
    Column("source_object", String, nullable=True),
    Column("target_object", String, nullable=True),
    #: The ebRIM element as stored and returned (``rim:`` prefix, namespace declared by the response root).
    Column("xml", Text, nullable=False),
)

# The stored queries' access paths. FindDocuments: patient + kind + status, then codes/times.
Index("ix_ro_patient_kind", registry_object.c.patient_id, registry_object.c.kind, registry_object.c.status)
Index("ix_ro_unique_id", registry_object.c.unique_id)
#: One row per version of a logical object (ITI-57): two updates of the same version cannot both commit.
#: Also the index of lookups by logicalId (its first column).
Index("ux_ro_lid_version", registry_object.c.lid, registry_object.c.version, unique=True)
# Associations only: the other kinds have no source/target, and indexing their NULLs cost pages on every
# ITI-42 for nothing. A comparison on the column (``source_object = ?``, ``IN``, a join) lets both
# databases use a partial index with this predicate.
_ASSOCIATIONS_ONLY_SOURCE = registry_object.c.source_object.isnot(None)
_ASSOCIATIONS_ONLY_TARGET = registry_object.c.target_object.isnot(None)
Index("ix_ro_source", registry_object.c.source_object, registry_object.c.assoc_type,
      sqlite_where=_ASSOCIATIONS_ONLY_SOURCE, postgresql_where=_ASSOCIATIONS_ONLY_SOURCE)
Index("ix_ro_target", registry_object.c.target_object, registry_object.c.assoc_type,
      sqlite_where=_ASSOCIATIONS_ONLY_TARGET, postgresql_where=_ASSOCIATIONS_ONLY_TARGET)

#: Multi-valued attributes. ``attr`` names are those of :data:`MULTI_VALUED`.
object_value = Table(
    "object_value",
    metadata,
    Column("object_pk", ForeignKey("registry_object.pk", ondelete="CASCADE"), nullable=False),
    Column("attr", String(24), nullable=False),
    Column("value", String, nullable=False),
)
Index("ix_ov_attr_value", object_value.c.attr, object_value.c.value, object_value.c.object_pk)
Index("ix_ov_object", object_value.c.object_pk)

#: Attribute names used in ``object_value.attr``: the multi-valued attributes the stored queries filter on.
EVENT_CODE = "eventCode"
CONFIDENTIALITY_CODE = "confidentialityCode"
AUTHOR_PERSON = "authorPerson"
REFERENCE_ID = "referenceId"
FOLDER_CODE = "folderCode"
MULTI_VALUED = (
    EVENT_CODE,
    CONFIDENTIALITY_CODE,
    AUTHOR_PERSON,
    REFERENCE_ID,
    FOLDER_CODE,
)

# --- patient reconciliation (registry/reconcile.py) -----------------------------------------------------

#: The other ids (PID-3 repetitions) of each fed patient, one row each, so a national id finds its patient
#: through an index. Kept by :func:`registry.storage.patients.PatientStore.upsert_patient`.
patient_other_id = Table(
    "patient_other_id",
    metadata,
    Column("patient_id", String, nullable=False),  # the domain id (patient.patient_id)
    Column("other_id", String, nullable=False),  # CX: id^^^&oid&ISO
)
Index("ix_poi_other", patient_other_id.c.other_id)
Index("ux_poi_patient_other", patient_other_id.c.patient_id, patient_other_id.c.other_id, unique=True)

#: A local (submitted) patient id linked to the affinity-domain patient it stands for.
patient_link = Table(
    "patient_link",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("local_patient_id", String, nullable=False, unique=True),
    Column("patient_id", String, nullable=False),  # the domain id
    Column("method", String(8), nullable=False),  # auto | manual
    Column("linked_by", String, nullable=False),  # operator, or auto:national-id
    Column("linked_at", String, nullable=False),  # ISO 8601 UTC
    Column("note", Text, nullable=True),
)

#: Submissions held because their patientId is a local id the registry cannot place yet.
reconciliation_item = Table(
    "reconciliation_item",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("submitted_patient_id", String, nullable=False),  # SubmissionSet patientId as submitted
    Column("source_patient_id", String, nullable=True),  # first DocumentEntry's sourcePatientId
    Column("national_ids", Text, nullable=False),  # JSON list of CX found in the submission
    Column("demographics", Text, nullable=False),  # JSON: name, birth_date, sex from sourcePatientInfo
    Column("submission_set_uid", String, nullable=True),
    Column("unique_ids", Text, nullable=False),  # JSON list: uniqueIds of the DocumentEntries and Folders
    Column("reason", Text, nullable=False),  # why it was not linked automatically
    Column("request_xml", Text, nullable=False),  # the SubmitObjectsRequest as received
    Column("received_at", String, nullable=False),  # ISO 8601 UTC
    Column("state", String(8), nullable=False),  # open | linked | rejected
    Column("resolved_by", String, nullable=True),
    Column("resolved_at", String, nullable=True),
    Column("patient_id", String, nullable=True),  # the domain id it was registered under
    Column("note", Text, nullable=True),
)
Index("ix_ri_state_patient", reconciliation_item.c.state, reconciliation_item.c.submitted_patient_id)
Index("ix_ri_ss_uid", reconciliation_item.c.submission_set_uid)
