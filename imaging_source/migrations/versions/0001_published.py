"""Imaging source state: ids_published_study.

Revision ID: i0001
"""
from alembic import op
import sqlalchemy as sa

revision = "i0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ids_published_study",
        sa.Column("study_instance_uid", sa.String, primary_key=True),
        sa.Column("pacs", sa.String, nullable=False),
        sa.Column("entry_uuid", sa.String, nullable=False),
        sa.Column("document_unique_id", sa.String, nullable=False),
        sa.Column("patient_id", sa.String, nullable=False),
        sa.Column("digest", sa.String, nullable=False),
        sa.Column("instances", sa.Integer, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("published_at", sa.Float, nullable=False),
    )
    op.create_index("ix_ids_published_pacs", "ids_published_study", ["pacs", "status"])


def downgrade() -> None:
    op.drop_table("ids_published_study")
