"""Sessions of the patron's self-service page

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 02:30:00

One row per login on "Min side": the SHA-256 of the session id (never the id itself), the patron
and the card that logged in, when it began and was last used, and when it ended.
"""

import sqlalchemy as sa
from alembic import op

import gateway.register.models

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'web_sessions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('patron_id', sa.Integer(), nullable=False),
        sa.Column('card_number', sa.String(length=10), nullable=False),
        sa.Column('created_at', gateway.register.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_seen_at', gateway.register.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('ended_at', gateway.register.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['patron_id'], ['patrons.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash'),
    )
    op.create_index('web_sessions_by_patron', 'web_sessions', ['patron_id'], unique=False)


def downgrade() -> None:
    op.drop_index('web_sessions_by_patron', table_name='web_sessions')
    op.drop_table('web_sessions')
