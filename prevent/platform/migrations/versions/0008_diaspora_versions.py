"""diaspora_versions: the diaspora map stored in versions, as playbooks are

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

import prevent.platform.storage.tables

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('diaspora_versions',
    sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('author', sa.String(length=100), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', prevent.platform.storage.tables.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('version')
    )


def downgrade() -> None:
    op.drop_table('diaspora_versions')
