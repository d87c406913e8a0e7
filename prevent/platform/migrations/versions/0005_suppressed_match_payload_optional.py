"""suppressed_matches.payload: kept on the match that records a would-be alert first

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('suppressed_matches', schema=None) as batch_op:
        batch_op.alter_column('payload', existing_type=sa.JSON(), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE suppressed_matches SET payload = '{}' WHERE payload IS NULL")
    with op.batch_alter_table('suppressed_matches', schema=None) as batch_op:
        batch_op.alter_column('payload', existing_type=sa.JSON(), nullable=False)
