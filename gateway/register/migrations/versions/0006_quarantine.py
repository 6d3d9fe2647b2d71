"""The quarantine of a legacy import: the rows it could not import, and what became of them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 10:00:00

One row per quarantined file row (issue 12, item 2; gateway.register.imports): the library, the
row's place and key (unique per library, so a re-run never quarantines a row twice), the card as
given, the reason and its detail, the status (open, resolved, discarded) and the resolution; and
until then the row itself as patrons keep it: the national id encrypted and its keyed index, a PIN
only as its scrypt hash, the other values as JSON.
"""

import sqlalchemy as sa
from alembic import op

import gateway.register.models

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'quarantine',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('library_id', sa.Integer(), nullable=False),
        sa.Column('row_number', sa.Integer(), nullable=False),
        sa.Column('row_key', sa.String(length=64), nullable=False),
        sa.Column('card', sa.String(length=40), nullable=True),
        sa.Column('reason', sa.String(length=32), nullable=False),
        sa.Column('detail', sa.String(length=300), nullable=True),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('created_at', gateway.register.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('resolved_at', gateway.register.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('resolution', sa.String(length=300), nullable=True),
        sa.Column('national_id_ciphertext', sa.LargeBinary(), nullable=True),
        sa.Column('national_id_index', sa.String(length=64), nullable=True),
        sa.Column('pin_hash', sa.String(length=200), nullable=True),
        sa.Column('data', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['library_id'], ['libraries.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('library_id', 'row_key', name='quarantine_row_once'),
    )
    op.create_index('quarantine_by_library', 'quarantine', ['library_id', 'status', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('quarantine_by_library', table_name='quarantine')
    op.drop_table('quarantine')
