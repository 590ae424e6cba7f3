"""Metadata Update (ITI-57): one row per (logicalId, version).

A new version is inserted with version = latest + 1; the unique index makes a second insert of the same
version fail even if two updates ever raced past the registry's locks.

Revision ID: 0002
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ux_ro_lid_version", "registry_object", ["lid", "version"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_ro_lid_version", table_name="registry_object")
