"""seen_entries.payload: the incident as published, kept until the rules stage stored it, so a
watcher on the memory-only broker (Tansu) publishes it again after a crash

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('seen_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payload', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('seen_entries', schema=None) as batch_op:
        batch_op.drop_column('payload')
