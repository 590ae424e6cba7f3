"""registry_object.offline: documentAvailability Offline as a column, so Metadata Level 1 queries filter
on it instead of scanning the stored XML.

Revision ID: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OFFLINE = "urn:ihe:iti:2010:DocumentAvailability:Offline"


def upgrade() -> None:
    with op.batch_alter_table("registry_object") as batch:
        batch.add_column(sa.Column("offline", sa.Boolean, nullable=True))
    op.execute(sa.text("UPDATE registry_object SET offline = :t WHERE kind = 'DE' AND xml LIKE :p")
               .bindparams(t=True, p=f"%{OFFLINE}%"))


def downgrade() -> None:
    with op.batch_alter_table("registry_object") as batch:
        batch.drop_column("offline")
