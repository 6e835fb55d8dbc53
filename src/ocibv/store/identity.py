"""Tenancies, users and their API signing keys."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ocibv.store.database import now_us
from ocibv.store.tables import api_keys, tenancies, users


@dataclass(frozen=True)
class Tenancy:
    id: str
    name: str
    description: str
    created_us: int


def add_tenancy(conn: sa.Connection, tenancy_id: str, name: str, description: str = "") -> None:
    conn.execute(
        tenancies.insert().values(
            id=tenancy_id, name=name, description=description, created_us=now_us()
        )
    )


def get_tenancy(conn: sa.Connection, tenancy_id: str) -> Tenancy | None:
    row = conn.execute(sa.select(tenancies).where(tenancies.c.id == tenancy_id)).first()
    return Tenancy(**dict(row._mapping)) if row else None


def find_tenancy_by_name(conn: sa.Connection, name: str) -> Tenancy | None:
    row = conn.execute(sa.select(tenancies).where(tenancies.c.name == name)).first()
    return Tenancy(**dict(row._mapping)) if row else None


def count_tenancies(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(tenancies)).scalar_one())


def add_user(conn: sa.Connection, user_id: str, tenancy_id: str, name: str) -> None:
    conn.execute(
        users.insert().values(id=user_id, tenancy_id=tenancy_id, name=name, created_us=now_us())
    )


def user_tenancy(conn: sa.Connection, user_id: str) -> str | None:
    return conn.execute(
        sa.select(users.c.tenancy_id).where(users.c.id == user_id)
    ).scalar_one_or_none()


def add_key(
    conn: sa.Connection, user_id: str, tenancy_id: str, fingerprint: str, public_pem: str
) -> None:
    conn.execute(
        api_keys.insert().values(
            user_id=user_id,
            tenancy_id=tenancy_id,
            fingerprint=fingerprint,
            public_key_pem=public_pem,
            created_us=now_us(),
        )
    )


def find_key(conn: sa.Connection, tenancy_id: str, user_id: str, fingerprint: str) -> str | None:
    """The public key PEM registered under that keyId, or None."""
    return conn.execute(
        sa.select(api_keys.c.public_key_pem).where(
            api_keys.c.tenancy_id == tenancy_id,
            api_keys.c.user_id == user_id,
            api_keys.c.fingerprint == fingerprint,
        )
    ).scalar_one_or_none()


def keys_of_tenancy(conn: sa.Connection, tenancy_id: str) -> list[dict[str, str]]:
    """Users of a tenancy with their public keys: ``[{id, name, fingerprint, pem}]``."""
    rows = conn.execute(
        sa.select(users.c.id, users.c.name, api_keys.c.fingerprint, api_keys.c.public_key_pem)
        .select_from(users.join(api_keys, api_keys.c.user_id == users.c.id))
        .where(users.c.tenancy_id == tenancy_id)
    )
    return [
        {"id": r.id, "name": r.name, "fingerprint": r.fingerprint, "pem": r.public_key_pem}
        for r in rows
    ]
