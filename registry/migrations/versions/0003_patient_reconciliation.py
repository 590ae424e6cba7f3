"""Patient reconciliation: other-id index of fed patients, local-id links, the reconciliation queue.

``patient_other_id`` is filled from the ``other_ids`` the ITI-8 feed already stored in each patient's
demographics, so national ids fed before this migration are found too.

Revision ID: 0003
"""
import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    poi = op.create_table(
        "patient_other_id",
        sa.Column("patient_id", sa.String, nullable=False),
        sa.Column("other_id", sa.String, nullable=False),
    )
    op.create_index("ix_poi_other", "patient_other_id", ["other_id"])
    op.create_index("ux_poi_patient_other", "patient_other_id", ["patient_id", "other_id"], unique=True)
    op.create_table(
        "patient_link",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("local_patient_id", sa.String, nullable=False, unique=True),
        sa.Column("patient_id", sa.String, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("linked_by", sa.String, nullable=False),
        sa.Column("linked_at", sa.String, nullable=False),
        sa.Column("note", sa.Text),
    )
    op.create_table(
        "reconciliation_item",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("submitted_patient_id", sa.String, nullable=False),
        sa.Column("source_patient_id", sa.String),
        sa.Column("national_ids", sa.Text, nullable=False),
        sa.Column("demographics", sa.Text, nullable=False),
        sa.Column("submission_set_uid", sa.String),
        sa.Column("unique_ids", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("request_xml", sa.Text, nullable=False),
        sa.Column("received_at", sa.String, nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("resolved_by", sa.String),
        sa.Column("resolved_at", sa.String),
        sa.Column("patient_id", sa.String),
        sa.Column("note", sa.Text),
    )
    op.create_index("ix_ri_state_patient", "reconciliation_item", ["state", "submitted_patient_id"])
    op.create_index("ix_ri_ss_uid", "reconciliation_item", ["submission_set_uid"])

    # Backfill from the demographics the feed stored.
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT patient_id, demographics FROM patient WHERE merged_into IS NULL")).all()
    out = []
    for patient_id, demographics in rows:
        try:
            others = json.loads(demographics or "{}").get("other_ids") or []
        except (ValueError, AttributeError):
            continue
        out += [{"patient_id": patient_id, "other_id": o} for o in dict.fromkeys(others) if isinstance(o, str) and o]
    if out:
        op.bulk_insert(poi, out)


def downgrade() -> None:
    op.drop_index("ix_ri_ss_uid", table_name="reconciliation_item")
    op.drop_index("ix_ri_state_patient", table_name="reconciliation_item")
    op.drop_table("reconciliation_item")
    op.drop_table("patient_link")
    op.drop_index("ux_poi_patient_other", table_name="patient_other_id")
    op.drop_index("ix_poi_other", table_name="patient_other_id")
    op.drop_table("patient_other_id")
