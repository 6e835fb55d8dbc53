"""HTTP edge: request signing, parsing and validation into service calls, and rendering of
OCI wire shapes (camelCase JSON, headers, error bodies). Nothing below this layer knows HTTP."""
