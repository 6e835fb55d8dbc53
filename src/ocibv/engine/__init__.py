"""Storage engine: volume images on disk, the content-addressed backup store and its backends.

Knows nothing about HTTP, OCI or SQL.
"""
