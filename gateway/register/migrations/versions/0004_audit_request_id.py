"""Audit events carry the id of the request they were part of

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 02:40:00

The request's log line carries the same id and names no patron; the audit trail leads from it to
the patron, for those allowed to read the trail.
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_id', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_column('request_id')
