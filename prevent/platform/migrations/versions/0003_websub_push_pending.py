"""websub_subscriptions.push_pending_at: a push received where the watcher does not run

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

import prevent.platform.storage.tables

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('websub_subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('push_pending_at', prevent.platform.storage.tables.UtcDateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('websub_subscriptions', schema=None) as batch_op:
        batch_op.drop_column('push_pending_at')
