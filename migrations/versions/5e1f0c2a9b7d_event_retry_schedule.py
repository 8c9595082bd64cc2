"""provider events: when a failed event is next processed again automatically

Revision ID: 5e1f0c2a9b7d
Revises: a6dbff6e4364
Create Date: 2026-12-04 11:00:00

"""
from alembic import op
import sqlalchemy as sa

import services.db


revision = '5e1f0c2a9b7d'
down_revision = 'a6dbff6e4364'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('provider_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_attempt_at', services.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_provider_events_retry_due', ['status', 'next_attempt_at'], unique=False)


def downgrade():
    with op.batch_alter_table('provider_events', schema=None) as batch_op:
        batch_op.drop_index('ix_provider_events_retry_due')
        batch_op.drop_column('next_attempt_at')
