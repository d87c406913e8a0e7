"""sites.diasporas: the countries (ISO 3166 alpha-2) and diaspora-map regions a partner site
serves, beside its communities (issue 21, point 6)

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing sites serve no named diaspora: '[]', on SQLite and PostgreSQL alike.
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('diasporas', sa.JSON(), nullable=False, server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_column('diasporas')
