"""Gradient flow through a model's named layers, and the Jacobian chain behind it.

Backpropagation is the chain rule applied layer by layer (chain-rule primer,
sections 8–11). For a model cut at layers ``h_1 … h_L`` so that
``outputs = f_{L+1}(h_L)``, ``h_{l+1} = f_{l+1}(h_l)``, ``h_1 = f_1(x)``:

* :func:`gradient_flow` measures, per layer, the norm of ∂L/∂hₗ (activations)
  and ∂L/∂Wₗ (the layer's parameters), their mean and spread over the batch,
  and the share of dead units (zero gradient for every sample).
* :func:`jacobian_chain` applies each local Jacobian Jₗ = ∂h_{l+1}/∂hₗ as a
  VJP, from the output back: ``∇_x L = J_1ᵀ J_2ᵀ … J_{L+1}ᵀ ∇_out L`` (the
  primer's ``J^T ∇L``), checks the product against the end-to-end gradient, and
  reports the largest and smallest singular values of the accumulated product
  ``Aₗ = ∂outputs/∂hₗ`` per depth: where vanishing and exploding become numbers.

Layers are reached through ``model.tap`` (see :mod:`explain.model`), so the
model is not edited. ``h_l`` is a layer's output: ``∂/∂hₗ`` is the gradient with
respect to a zero delta added there. Input and layer gradients go through
:func:`explain.gradients.target_and_grad` / :func:`~explain.gradients.target_and_layer_grad`;
parameter gradients through :func:`explain.gradflow.flow.param_grads`, the one
place that differentiates with respect to parameters. Both public functions
take ``target=`` / ``labels=`` / ``layers=`` / ``memory_budget=`` / ``show_progress=``
keyword-only, validate before compiling, and chunk rows with :mod:`explain.chunking`;
both return frozen pytree results (:class:`explain.results.Result`).

What "chain" means: layers ``l_1 … l_L`` (in forward order) form a chain when
every path from the input to the output passes through ``h_1``, every path
from ``h_l`` to the output passes through ``h_{l+1}``, and the output depends
on ``h_L`` only. Sequential models (the shipped CNNs and MLPs) are chains at
their top-level blocks; a residual connection that jumps over a cut is not.
The check is numerical and exact in principle: at each cut the gradient
carried by the chained VJPs must equal the total gradient there.

References:
  Rumelhart, Hinton, Williams (1986), Learning representations by back-propagating errors.
  Glorot & Bengio (2010), Understanding the difficulty of training deep feedforward neural networks.
"""

from explain.gradflow.chain import JacobianChain, chained_vjps, jacobian_chain
from explain.gradflow.flow import GradientFlow, flow_grads, gradient_flow, param_grads
from explain.gradflow.layers import forward_order, resolve_layers

__all__ = [
    "GradientFlow",
    "JacobianChain",
    "chained_vjps",
    "flow_grads",
    "forward_order",
    "gradient_flow",
    "jacobian_chain",
    "param_grads",
    "resolve_layers",
]
