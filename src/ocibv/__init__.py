"""ocibv: the OCI Block Volume service, self-hosted.

Layers (imports point one way): api/ -> services/ -> domain/, store/, jobs/ -> engine/.
"""

__version__ = "0.1.0"
