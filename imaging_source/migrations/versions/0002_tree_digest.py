"""Imaging source state: ids_published_study.tree_digest (the manifest's instances under their series).

Revision ID: i0002
"""
from alembic import op
import sqlalchemy as sa

revision = "i0002"
down_revision = "i0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows published before it get it at their next publication check (imaging_source.publish).
    op.add_column("ids_published_study", sa.Column("tree_digest", sa.String, nullable=True))


def downgrade() -> None:
    op.drop_column("ids_published_study", "tree_digest")
