"""What eocube's other packages use of :mod:`eocube.io` beyond its user API.

:mod:`eocube.learn` fingerprints a training run as the writer fingerprints a computation, and
:mod:`eocube.plan` sizes chunks and shards by the writer's layout rules; they import these names
from here rather than from the private modules that define them. Not part of the user API.
"""

from ._fingerprint import computation_token, nondeterminism
from ._layout import SHARD_BYTES, inner_chunks, parse_bytes

__all__ = ["SHARD_BYTES", "computation_token", "inner_chunks", "nondeterminism", "parse_bytes"]
