"""OCI operations, one module per resource family; method names are the OCI operation names
in snake_case (``create_volume``). Services enforce business and state rules and own the
lifecycle; they never see HTTP. Backup policies: ``backup_policies``, ``backup_policy_assignments``;
the scheduler that takes scheduled backups and moves the clock, ``backup_scheduler``; expiry of
scheduled backups, ``backup_expiry``."""
