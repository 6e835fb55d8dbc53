"""Plain-Python rules of the service: OCI error codes, lifecycle states and transitions,
OCIDs and limits, retention, and backup schedules (``backup_schedules``: when a schedule fires,
which wins an instant, Oracle's gold, silver and bronze). Nothing here does I/O."""
