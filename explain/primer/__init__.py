"""The chain-rule primer as code: its worked examples and the vanishing/exploding depth experiment.

* :mod:`explain.primer.chain_rule`: each worked example's local derivatives by JAX, multiplied, beside ``jax.grad``.
* :mod:`explain.primer.depth`: how the product of local derivatives vanishes or explodes with an MLP's depth.
"""

from explain.primer import chain_rule, depth

__all__ = ["chain_rule", "depth"]
