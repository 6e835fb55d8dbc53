"""Table definitions (the migrations in ``migrations/versions`` create the same schema)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

tenancies = sa.Table(
    "tenancies",
    metadata,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_us", sa.BigInteger, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("tenancy_id", sa.String(255), nullable=False, index=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("user_id", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("tenancy_id", sa.String(255), nullable=False),
    sa.Column("public_key_pem", sa.Text, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
)

# Every OCI resource (compartments, volumes, groups, backups) is a row here: the columns
# are what lists filter and sort on, ``attrs`` holds the rest of the resource's fields.
resources = sa.Table(
    "resources",
    metadata,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("tenancy_id", sa.String(255), nullable=False),
    sa.Column("compartment_id", sa.String(255), nullable=False),
    sa.Column("availability_domain", sa.String(255), nullable=False, default=""),
    sa.Column("display_name", sa.String(255), nullable=False),
    sa.Column("lifecycle_state", sa.String(32), nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    sa.Column("etag", sa.String(64), nullable=False),
    sa.Column("parent_id", sa.String(255), nullable=True),
    sa.Column("source_id", sa.String(255), nullable=True),
    sa.Column("purge_after_us", sa.BigInteger, nullable=True),
    sa.Column("attrs", sa.JSON, nullable=False),
    sa.Index("ix_resources_list", "tenancy_id", "kind", "compartment_id", "created_us"),
    sa.Index("ix_resources_parent", "parent_id"),
    # the exact orders of list pages (keyset paging reads from the index, never sorts)
    sa.Index(
        "ix_resources_list_by_ad",
        "tenancy_id", "kind", "compartment_id", "availability_domain", "created_us", "id",
    ),
    sa.Index(
        "ix_resources_list_by_time", "tenancy_id", "kind", "compartment_id", "created_us", "id"
    ),
)

retry_tokens = sa.Table(
    "retry_tokens",
    metadata,
    sa.Column("tenancy_id", sa.String(255), primary_key=True),
    sa.Column("operation", sa.String(64), primary_key=True),
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("body_hash", sa.String(64), nullable=False),
    sa.Column("resource_id", sa.String(255), nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("resource_id", sa.String(255), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("owner", sa.String(64), nullable=True),
    sa.Column("progress_done", sa.BigInteger, nullable=False, default=0),
    sa.Column("progress_total", sa.BigInteger, nullable=False, default=0),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("started_us", sa.BigInteger, nullable=True),
    sa.Column("heartbeat_us", sa.BigInteger, nullable=True),
    sa.Column("finished_us", sa.BigInteger, nullable=True),
    sa.Column("run_after_us", sa.BigInteger, nullable=True),
    # The process that must run it (it holds an NBD attachment the job reads through);
    # cleared when that process dies.
    sa.Column("pinned_to", sa.String(64), nullable=True),
    sa.Column("note", sa.Text, nullable=True),  # what a user should know about its progress
)

# Who holds a resource and why (``domain.reservations``): a job's resource or a process.
reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("resource_id", sa.String(255), nullable=False, index=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("holder_id", sa.String(255), nullable=False, index=True),
    sa.Column("process_id", sa.String(64), nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("resource_id", "reason", "holder_id", name="uq_reservations_holder"),
)

# Every ocibv process that runs jobs or holds reservations, with a heartbeat: its work is
# taken over only once it is known dead (its pid gone on this host, or its heartbeat stale).
processes = sa.Table(
    "processes",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_us", sa.BigInteger, nullable=False),
    sa.Column("heartbeat_us", sa.BigInteger, nullable=False),
)

# The service clock's offset from real time (one row; absent means real time).
clock = sa.Table(
    "clock",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("offset_us", sa.BigInteger, nullable=False),
)

# Periodic work that must run in one process at a time (GC, housekeeping, the scheduler) is
# done by the holder of its lease; a lease whose holder stopped renewing it expires.
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("expires_us", sa.BigInteger, nullable=False),
)

# Secrets every process of the service shares (the page-token key).
secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(255), nullable=False),
)

# One row per (asset, schedule, instant) the backup scheduler has handled: the backup it made,
# or why it made none (another schedule of the policy won the instant). The primary key is
# what makes a scheduled backup happen at most once, whatever the number of processes.
scheduled_runs = sa.Table(
    "scheduled_runs",
    metadata,
    sa.Column("asset_id", sa.String(255), primary_key=True),
    sa.Column("schedule_key", sa.String(32), primary_key=True),
    sa.Column("instant_us", sa.BigInteger, primary_key=True),
    sa.Column("policy_id", sa.String(255), nullable=False),
    sa.Column("backup_id", sa.String(255), nullable=True),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
)
