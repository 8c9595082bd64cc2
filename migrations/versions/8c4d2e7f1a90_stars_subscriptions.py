"""orders: recurring Stars subscriptions and what the provider says of their renewal

Revision ID: 8c4d2e7f1a90
Revises: 5e1f0c2a9b7d
Create Date: 2026-12-04 11:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '8c4d2e7f1a90'
down_revision = '5e1f0c2a9b7d'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recurring', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('renewal', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('renewal')
        batch_op.drop_column('recurring')
