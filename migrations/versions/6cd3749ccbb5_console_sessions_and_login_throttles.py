"""console session versions and login throttles

Logout revokes sessions through staff_users.session_version; failed logins are counted per (e-mail,
client address) in login_throttles instead of per account (failed_logins, locked_until), so a lock-out
no longer locks the real user out from everywhere.

Revision ID: 6cd3749ccbb5
Revises: 8c4d2e7f1a90
Create Date: 2026-12-04 10:31:17.555934

"""
from alembic import op
import sqlalchemy as sa

import services.db


# revision identifiers, used by Alembic.
revision = '6cd3749ccbb5'
down_revision = '8c4d2e7f1a90'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('login_throttles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('blocked_until', services.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_failure_at', services.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_throttles')),
    sa.UniqueConstraint('key', name=op.f('uq_login_throttles_key'))
    )
    with op.batch_alter_table('login_throttles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_throttles_last_failure_at'), ['last_failure_at'], unique=False)

    # Existing accounts start at version 0; the default only fills them (sessions issued before this
    # migration carry no version, so they end and staff log in once more).
    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), nullable=False, server_default='0'))
        batch_op.drop_column('locked_until')
        batch_op.drop_column('failed_logins')
    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.alter_column('session_version', server_default=None)


def downgrade():
    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failed_logins', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('locked_until', services.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.drop_column('session_version')
    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.alter_column('failed_logins', server_default=None)

    with op.batch_alter_table('login_throttles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_throttles_last_failure_at'))

    op.drop_table('login_throttles')
