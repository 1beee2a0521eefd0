"""Array annotations shared by public signatures (jaxtyping); checked at test time, never in production paths.

``tests/explain/test_annotations.py`` calls every public function wrapped in
``jaxtyping.jaxtyped(typechecker=beartype)`` on valid input, so an annotation that does not
match what the function takes and returns fails the tests; production calls pay nothing.
Bad input is not type-checked: :meth:`explain.model.InputSpec.validate` and
:mod:`explain.checks` give the error messages. User input is annotated loosely
(:data:`Batch`: any array-like of rank ≥ 1, host or device); computed arrays precisely
(``Float[Array, " n *features"]``).
"""

from __future__ import annotations

from jaxtyping import Array, ArrayLike, Bool, Float, Int, Shaped

Batch = Shaped[ArrayLike, " n *features"]  # a user's x before validation: (N, *input_shape)

__all__ = ["Array", "ArrayLike", "Batch", "Bool", "Float", "Int", "Shaped"]
