"""OCI operations, one module per resource family; method names are the OCI operation names
in snake_case (``create_volume``). Services enforce business and state rules and own the
lifecycle; they never see HTTP."""
