"""The affinity domain's patients (fed by ITI-8) and A40 merges."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from xml.sax.saxutils import quoteattr

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, update

from registry.storage import schema as s
from xdsi.db import DriverStatement


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class PatientStore:
    """Patients in the registry database; implements the ``PatientStore`` protocol of
    :mod:`registry.patient_feed`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def upsert_patient(self, patient_id: str, demographics: dict) -> None:
        with self.engine.begin() as conn:
            _upsert(conn, patient_id, demographics)

    def merge_patients(self, surviving_id: str, subsumed_id: str) -> int:
        """A40: the subsumed id's objects move to the surviving id (column and stored XML) and the
        subsumed id is marked merged, so later submissions with it fail with XDSUnknownPatientId."""
        with self.engine.begin() as conn:
            _upsert(conn, surviving_id, None)
            conn.execute(
                update(s.patient).where(s.patient.c.patient_id == subsumed_id).values(merged_into=surviving_id, updated=_now())
            )
            if conn.execute(select(s.patient.c.pk).where(s.patient.c.patient_id == subsumed_id)).first() is None:
                conn.execute(
                    insert(s.patient).values(patient_id=subsumed_id, demographics="{}", merged_into=surviving_id, updated=_now())
                )
            ro = s.registry_object
            rows = conn.execute(select(ro.c.pk, ro.c.xml).where(ro.c.patient_id == subsumed_id)).all()
            # The patient id appears in the stored XML as the value of its ExternalIdentifier.
            old, new = "value=" + quoteattr(subsumed_id), "value=" + quoteattr(surviving_id)
            for pk, xml in rows:
                conn.execute(update(ro).where(ro.c.pk == pk).values(patient_id=surviving_id, xml=xml.replace(old, new)))
            return len(rows)

    def get(self, patient_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(s.patient).where(s.patient.c.patient_id == patient_id)).first()
        if row is None:
            return None
        return {"patient_id": row.patient_id, "demographics": json.loads(row.demographics), "merged_into": row.merged_into}


def patient_is_known(conn: Connection, patient_id: str) -> bool:
    """True if ``patient_id`` was fed and has not been merged into another id."""
    rows = _MERGED_INTO.execute(conn, {"pid": patient_id})
    return bool(rows) and rows[0][0] is None


#: On the driver: every ITI-42 runs it inside the write transaction.
_MERGED_INTO = DriverStatement(select(s.patient.c.merged_into).where(s.patient.c.patient_id == bindparam("pid")))


def _upsert(conn: Connection, patient_id: str, demographics: dict | None) -> None:
    row = conn.execute(select(s.patient.c.pk).where(s.patient.c.patient_id == patient_id)).first()
    if row is None:
        conn.execute(
            insert(s.patient).values(
                patient_id=patient_id, demographics=json.dumps(demographics or {}), merged_into=None, updated=_now()
            )
        )
    elif demographics is not None:
        conn.execute(
            update(s.patient)
            .where(s.patient.c.pk == row[0])
            .values(demographics=json.dumps(demographics), merged_into=None, updated=_now())
        )
    if demographics is not None:
        _set_other_ids(conn, patient_id, demographics.get("other_ids") or [])


def _set_other_ids(conn: Connection, patient_id: str, other_ids: list[str]) -> None:
    """Index the patient's other ids (national ids...) for reconciliation (registry/reconcile.py)."""
    poi = s.patient_other_id
    conn.execute(delete(poi).where(poi.c.patient_id == patient_id))
    ids = [o for o in dict.fromkeys(other_ids) if isinstance(o, str) and o]
    if ids:
        conn.execute(insert(poi), [{"patient_id": patient_id, "other_id": o} for o in ids])
