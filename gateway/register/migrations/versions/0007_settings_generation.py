"""The settings generation: one number every change to a library, terminal or API client raises

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 06:00:00

Every gateway process keeps the facts of decisions without a PIN in memory (issue 13,
gateway.register.memory) and follows the change feed to forget what changed to patrons; libraries,
terminals and API clients are not in that feed, so a transaction that changes one of them raises
this number, and the processes forget their library settings and client credentials when it moves.
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        'settings_generation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('value', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.bulk_insert(table, [{'id': 1, 'value': 0}])


def downgrade() -> None:
    op.drop_table('settings_generation')
