"""The ``ocibv`` command line: serve, env, tenancy/key administration, volume import/export,
jobs."""
