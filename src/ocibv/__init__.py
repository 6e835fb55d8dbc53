"""ocibv: the OCI Block Volume service, self-hosted.

Layers (imports point one way): api/ -> services/ -> domain/, store/, jobs/ -> engine/.
"""

import os

# numpy (manifests, chunk tables, unique sizes) loads OpenBLAS, which starts a thread per
# CPU that spins for a while waiting for linear algebra ocibv never asks of it: ~0.1-0.17 s
# of CPU taken from every engine process at start, on a machine of 2 CPUs (measured with
# ``python -c "import numpy"``). Set before anything imports numpy; an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
