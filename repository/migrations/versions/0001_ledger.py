"""Repository ledger: repository_document.

Revision ID: r0001
"""
from alembic import op
import sqlalchemy as sa

revision = "r0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "repository_document",
        sa.Column("unique_id", sa.String, primary_key=True),
        sa.Column("content_key", sa.String, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mime_type", sa.String, nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("submission", sa.String, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_index("ix_repository_document_content", "repository_document", ["content_key"])
    op.create_index("ix_repository_document_state", "repository_document", ["state", "created"])


def downgrade() -> None:
    op.drop_table("repository_document")
