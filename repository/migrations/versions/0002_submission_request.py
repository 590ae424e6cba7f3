"""Repository ledger: repository_submission, the registration request of each pending submission, so
recovery can finish a registration a crash interrupted.

Revision ID: r0002
"""
from alembic import op
import sqlalchemy as sa

revision = "r0002"
down_revision = "r0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "repository_submission",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("repository_submission")
