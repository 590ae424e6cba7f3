"""What the imaging source has published: one row per study manifest it keeps current in the registry.

The publisher gives every manifest DocumentEntry its own entryUUID, so replacing a manifest (RPLC) or
deprecating it (ITI-57) needs no registry lookup; the instance digest tells whether a study changed since
its manifest was built. RAD-69 uses the table to find which PACS holds a study, and the tree digest to
know when a request asks for exactly the manifest's instances (then it streams them, unless a streamed
answer for the manifest was once cut off).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Column, Connection, Float, Integer, MetaData, String, Table, delete, insert, select, update

metadata = MetaData()

PUBLISHED = "published"
WITHDRAWN = "withdrawn"

published_study = Table(
    "ids_published_study",
    metadata,
    Column("study_instance_uid", String, primary_key=True),
    Column("pacs", String, nullable=False),
    Column("entry_uuid", String, nullable=False),  # the current manifest's DocumentEntry entryUUID
    Column("document_unique_id", String, nullable=False),  # = KOS SOP Instance UID
    Column("patient_id", String, nullable=False),  # affinity-domain id it was published under
    Column("digest", String, nullable=False),  # SHA-1 of the sorted SOP Instance UIDs it references
    Column("instances", Integer, nullable=False),
    Column("status", String(10), nullable=False),
    Column("published_at", Float, nullable=False),
    # tree_digest() of the manifest: RAD-69 streams a request that lists exactly these instances under these
    # series (imaging_source.retrieve). NULL for rows published before it was kept, until the next check.
    Column("tree_digest", String, nullable=True),
    # When a streamed RAD-69 answer for this manifest had to be cut off (an instance did not come from the
    # PACS): its retrievals are fetched whole first from then on (imaging_source.retrieve), across restarts,
    # until a new manifest is published for the study. NULL: never.
    Column("cut_off_at", Float, nullable=True),
)


@dataclass(frozen=True)
class Published:
    study_instance_uid: str
    pacs: str
    entry_uuid: str
    document_unique_id: str
    patient_id: str
    digest: str
    instances: int
    status: str
    published_at: float
    tree_digest: str | None = None
    cut_off_at: float | None = None


def digest(sop_instance_uids: Iterable[str]) -> str:
    """Identifies a set of instances (a manifest's, or a RAD-69 request's for one study): the SHA-1 of the
    sorted SOP Instance UIDs."""
    return hashlib.sha1("\n".join(sorted(sop_instance_uids)).encode()).hexdigest()


def tree_digest(instances: Iterable[tuple[str, str]]) -> str:
    """Identifies instances under their series: the SHA-1 of the sorted ``series/sop`` lines of
    (Series Instance UID, SOP Instance UID) pairs."""
    return hashlib.sha1("\n".join(sorted(f"{series}/{sop}" for series, sop in instances)).encode()).hexdigest()


def get(conn: Connection, study_instance_uid: str) -> Published | None:
    row = conn.execute(select(published_study).where(published_study.c.study_instance_uid == study_instance_uid)).first()
    return Published(**row._mapping) if row is not None else None


def for_pacs(conn: Connection, pacs: str, status: str = PUBLISHED) -> list[Published]:
    rows = conn.execute(select(published_study).where(published_study.c.pacs == pacs,
                                                      published_study.c.status == status))
    return [Published(**r._mapping) for r in rows]


def put(conn: Connection, p: Published) -> None:
    conn.execute(delete(published_study).where(published_study.c.study_instance_uid == p.study_instance_uid))
    conn.execute(insert(published_study).values(**p.__dict__))


def mark_cut_off(conn: Connection, study_instance_uid: str) -> None:
    """Record that a streamed answer for the study's manifest was cut off (see ``cut_off_at``)."""
    conn.execute(update(published_study).where(published_study.c.study_instance_uid == study_instance_uid)
                 .values(cut_off_at=now()))


def now() -> float:
    return time.time()
