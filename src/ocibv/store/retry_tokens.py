"""Retry tokens: (tenancy, operation, token) -> the resource a create made, for 24 hours."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ocibv.store.tables import retry_tokens


@dataclass(frozen=True)
class RetryToken:
    body_hash: str
    resource_id: str
    created_us: int


def find(
    conn: sa.Connection, tenancy_id: str, operation: str, token: str, not_before_us: int
) -> RetryToken | None:
    row = conn.execute(
        sa.select(retry_tokens).where(
            retry_tokens.c.tenancy_id == tenancy_id,
            retry_tokens.c.operation == operation,
            retry_tokens.c.token == token,
            retry_tokens.c.created_us >= not_before_us,
        )
    ).first()
    return RetryToken(row.body_hash, row.resource_id, row.created_us) if row else None


def record(
    conn: sa.Connection,
    tenancy_id: str,
    operation: str,
    token: str,
    body_hash: str,
    resource_id: str,
    now_us: int,
) -> None:
    """Remember a token (replacing an expired one under the same key)."""
    key = (
        (retry_tokens.c.tenancy_id == tenancy_id)
        & (retry_tokens.c.operation == operation)
        & (retry_tokens.c.token == token)
    )
    conn.execute(retry_tokens.delete().where(key))
    conn.execute(
        retry_tokens.insert().values(
            tenancy_id=tenancy_id,
            operation=operation,
            token=token,
            body_hash=body_hash,
            resource_id=resource_id,
            created_us=now_us,
        )
    )


def purge_older_than(conn: sa.Connection, cutoff_us: int) -> None:
    conn.execute(retry_tokens.delete().where(retry_tokens.c.created_us < cutoff_us))
