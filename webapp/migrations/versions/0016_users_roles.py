"""users with roles, two-factor secrets, listed sessions

Revision ID: 0016
Revises: 0010
Create Date: 2026-12-05 04:00:00
"""
from alembic import op
import sqlalchemy as sa



revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every existing user was an admin: they stay admins, so nothing breaks.
    with op.batch_alter_table('sslm_admin', schema=None) as batch_op:
        batch_op.add_column(sa.Column('role', sa.String(16), server_default='admin', nullable=False))
        batch_op.add_column(sa.Column('totp_secret', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('totp_enabled_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('totp_last_step', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('recovery_codes', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('oidc_subject', sa.String(600), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_sslm_admin_oidc_subject'), ['oidc_subject'])
    op.create_table(
        'sslm_session',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(64), nullable=False),
        sa.Column('role', sa.String(16), nullable=False),
        sa.Column('address', sa.String(64), nullable=False),
        sa.Column('user_agent', sa.String(200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['sslm_admin.id'], name=op.f('fk_sslm_session_user_id_sslm_admin'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sslm_session')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_sslm_session_token_hash')),
    )
    op.create_index(op.f('ix_sslm_session_user_id'), 'sslm_session', ['user_id'], unique=False)
    op.create_table(
        'sslm_passkey',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('credential_id', sa.String(1400), nullable=False),
        sa.Column('public_key', sa.Text(), nullable=False),
        sa.Column('sign_count', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(100), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['sslm_admin.id'], name=op.f('fk_sslm_passkey_user_id_sslm_admin'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sslm_passkey')),
        sa.UniqueConstraint('credential_id', name=op.f('uq_sslm_passkey_credential_id')),
    )
    op.create_index(op.f('ix_sslm_passkey_user_id'), 'sslm_passkey', ['user_id'], unique=False)
    # API tokens belong to a user (none for those made before: the instance owner's).
    with op.batch_alter_table('sslm_api_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('user_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_sslm_api_token_user_id'), ['user_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_sslm_api_token_user_id_sslm_admin'), 'sslm_admin',
                                    ['user_id'], ['id'], ondelete='CASCADE')


def downgrade() -> None:
    with op.batch_alter_table('sslm_api_token', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_sslm_api_token_user_id_sslm_admin'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_sslm_api_token_user_id'))
        batch_op.drop_column('user_id')
    op.drop_index(op.f('ix_sslm_passkey_user_id'), table_name='sslm_passkey')
    op.drop_table('sslm_passkey')
    op.drop_index(op.f('ix_sslm_session_user_id'), table_name='sslm_session')
    op.drop_table('sslm_session')
    with op.batch_alter_table('sslm_admin', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_sslm_admin_oidc_subject'), type_='unique')
        for column in ('oidc_subject', 'recovery_codes', 'totp_last_step', 'totp_enabled_at', 'totp_secret',
                       'role'):
            batch_op.drop_column(column)
