"""Initial registry schema: patient, registry_object, object_value.

Revision ID: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIGPK = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "patient",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("patient_id", sa.String, nullable=False, unique=True),
        sa.Column("demographics", sa.Text, nullable=False),
        sa.Column("merged_into", sa.String, nullable=True),
        sa.Column("updated", sa.String, nullable=False),
    )
    op.create_table(
        "registry_object",
        sa.Column("pk", BIGPK, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String, nullable=False, unique=True),
        sa.Column("lid", sa.String, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(2), nullable=False),
        sa.Column("status", sa.String(1), nullable=False),
        sa.Column("patient_id", sa.String),
        sa.Column("unique_id", sa.String),
        sa.Column("home", sa.String),
        sa.Column("object_type", sa.String(1)),
        sa.Column("class_code", sa.String),
        sa.Column("type_code", sa.String),
        sa.Column("format_code", sa.String),
        sa.Column("practice_setting_code", sa.String),
        sa.Column("facility_type_code", sa.String),
        sa.Column("creation_time", sa.String(14)),
        sa.Column("service_start_time", sa.String(14)),
        sa.Column("service_stop_time", sa.String(14)),
        sa.Column("hash", sa.String),
        sa.Column("size", sa.BigInteger),
        sa.Column("repository_unique_id", sa.String),
        sa.Column("source_id", sa.String),
        sa.Column("submission_time", sa.String(14)),
        sa.Column("content_type_code", sa.String),
        sa.Column("last_update_time", sa.String(14)),
        sa.Column("assoc_type", sa.String),
        sa.Column("source_object", sa.String),
        sa.Column("target_object", sa.String),
        sa.Column("xml", sa.Text, nullable=False),
    )
    op.create_index("ix_ro_patient_kind", "registry_object", ["patient_id", "kind", "status"])
    op.create_index("ix_ro_unique_id", "registry_object", ["unique_id"])
    op.create_index("ix_ro_lid", "registry_object", ["lid"])
    op.create_index("ix_ro_source", "registry_object", ["source_object", "assoc_type"])
    op.create_index("ix_ro_target", "registry_object", ["target_object", "assoc_type"])
    op.create_table(
        "object_value",
        sa.Column("object_pk", BIGPK, sa.ForeignKey("registry_object.pk", ondelete="CASCADE"), nullable=False),
        sa.Column("attr", sa.String(24), nullable=False),
        sa.Column("value", sa.String, nullable=False),
    )
    op.create_index("ix_ov_attr_value", "object_value", ["attr", "value", "object_pk"])
    op.create_index("ix_ov_object", "object_value", ["object_pk"])


def downgrade() -> None:
    op.drop_table("object_value")
    op.drop_table("registry_object")
    op.drop_table("patient")
