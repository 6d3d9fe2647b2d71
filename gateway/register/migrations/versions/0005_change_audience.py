"""The change feed per library: who each change is for, and the card a replacement retired

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:00:00

``change_audience`` holds, for every change, the libraries the patron was affiliated with (home
library or activated there) when the change was committed; a library reads its feed through the
index on (library_id, change_id). ``changes.previous_card`` is the number a replacement retired.

Changes written before this revision get the affiliations their patron has now (the best that can
be known afterwards); a deletion goes to the library it names (or the home library).
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('changes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_card', sa.String(length=10), nullable=True))
    op.create_table(
        'change_audience',
        sa.Column('change_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('library_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['change_id'], ['changes.id'], name='change_audience_change', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('change_id', 'library_id'),
    )
    op.create_index('change_audience_by_library', 'change_audience', ['library_id', 'change_id'], unique=True)
    op.execute("""
        INSERT INTO change_audience (change_id, library_id)
        SELECT c.id, a.library_id FROM changes c JOIN activations a ON a.patron_id = c.patron_id
         WHERE c.kind <> 'deleted'
        UNION
        SELECT c.id, p.home_library_id FROM changes c JOIN patrons p ON p.id = c.patron_id
         WHERE c.kind <> 'deleted'
        UNION
        SELECT c.id, l.id FROM changes c JOIN libraries l ON l.isil = c.library_isil
         WHERE c.kind = 'deleted'
        UNION
        SELECT c.id, p.home_library_id FROM changes c JOIN patrons p ON p.id = c.patron_id
         WHERE c.kind = 'deleted' AND c.library_isil IS NULL
    """)


def downgrade() -> None:
    op.drop_index('change_audience_by_library', table_name='change_audience')
    op.drop_table('change_audience')
    with op.batch_alter_table('changes', schema=None) as batch_op:
        batch_op.drop_column('previous_card')
