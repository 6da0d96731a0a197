"""API tokens, certificate tags, Idempotency-Keys of API requests

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sslm_certificate_tag',
        sa.Column('certificate_id', sa.Integer(), nullable=False),
        sa.Column('tag', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['certificate_id'], ['sslm_certificate.id'],
                                name=op.f('fk_sslm_certificate_tag_certificate_id_sslm_certificate'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('certificate_id', 'tag', name=op.f('pk_sslm_certificate_tag')))
    op.create_index(op.f('ix_sslm_certificate_tag_tag'), 'sslm_certificate_tag', ['tag'], unique=False)
    op.create_table(
        'sslm_api_token',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('secret_hash', sa.String(length=64), nullable=False),
        sa.Column('scopes', sa.JSON(), nullable=False),
        sa.Column('cert_ids', sa.JSON(), nullable=False),
        sa.Column('tags', sa.JSON(), nullable=False),
        sa.Column('created_by', sa.String(length=150), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_used_address', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sslm_api_token')),
        sa.UniqueConstraint('name', name=op.f('uq_sslm_api_token_name')),
        sqlite_autoincrement=True)
    op.create_table(
        'sslm_idempotency_key',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('status', sa.Integer(), nullable=False),
        sa.Column('response', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sslm_idempotency_key')),
        sa.UniqueConstraint('token_id', 'key', name=op.f('uq_sslm_idempotency_key_token_id')))
    op.create_index(op.f('ix_sslm_idempotency_key_created_at'), 'sslm_idempotency_key', ['created_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_sslm_idempotency_key_created_at'), table_name='sslm_idempotency_key')
    op.drop_table('sslm_idempotency_key')
    op.drop_table('sslm_api_token')
    op.drop_index(op.f('ix_sslm_certificate_tag_tag'), table_name='sslm_certificate_tag')
    op.drop_table('sslm_certificate_tag')
