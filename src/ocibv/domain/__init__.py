"""Plain-Python rules of the service: OCI error codes, lifecycle states and transitions,
OCIDs and limits. Nothing here does I/O."""
