"""The one result convention: frozen pytree dataclasses holding JAX arrays, with :meth:`Result.to_numpy`."""

from __future__ import annotations

import jax
import numpy as np


class Result:
    """Mixin for result dataclasses (registered with ``jax.tree_util.register_dataclass``)."""

    def to_numpy(self):
        """The same result with every array leaf as a NumPy array (static fields unchanged)."""
        return jax.tree_util.tree_map(np.asarray, self)
