"""Imaging source state: ids_published_study.cut_off_at (a streamed RAD-69 answer for the study was cut off).

Revision ID: i0003
"""
from alembic import op
import sqlalchemy as sa

revision = "i0003"
down_revision = "i0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ids_published_study", sa.Column("cut_off_at", sa.Float, nullable=True))


def downgrade() -> None:
    op.drop_column("ids_published_study", "cut_off_at")
