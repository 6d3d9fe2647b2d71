"""PIN attempts are claimed before they are checked

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 23:55:00

``pin_pending`` counts PIN checks under way (claimed, not yet settled), so that at most
``pin_max_failures`` guesses are ever being checked or counted at once; ``pin_claimed_at`` is when
the newest claim was made, so that claims left behind by a process that died expire.
"""

import sqlalchemy as sa
from alembic import op

import gateway.register.models

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('patrons', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pin_pending', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('pin_claimed_at', gateway.register.models.UTCDateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('patrons', schema=None) as batch_op:
        batch_op.drop_column('pin_claimed_at')
        batch_op.drop_column('pin_pending')
