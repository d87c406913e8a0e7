"""notices.next_attempt_at and notices.refusals: retries are scheduled, not slept in a handler

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

import prevent.platform.storage.tables

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_attempt_at', prevent.platform.storage.tables.UtcDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('refusals', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_index(batch_op.f('ix_notices_next_attempt_at'), ['next_attempt_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notices_next_attempt_at'))
        batch_op.drop_column('refusals')
        batch_op.drop_column('next_attempt_at')
