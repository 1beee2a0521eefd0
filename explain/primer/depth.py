"""The depth experiment: how the chain rule's product of local derivatives vanishes or explodes with depth.

An MLP of depth ``d`` is ``hₗ = act(W_l h_{l-1} + b_l)`` for ``l = 1 … d``
(``h_0 = x``, width ``w`` throughout) and a linear head to ``K`` classes,
trained on cross-entropy. Backpropagation multiplies one local Jacobian per
layer, ``∂hₗ/∂h_{l-1} = diag(act'(zₗ)) Wₗ``, so

    ∂L/∂h_1 = J_2ᵀ … J_dᵀ ∂L/∂h_d,     ‖∂L/∂h_1‖ / ‖∂L/∂h_d‖ ≈ ∏ (typical gain per layer).

With the sigmoid, ``act' ≤ 0.25`` and Glorot weights (gain ≈ 1), the ratio falls
like ``0.25^(d-1)`` (primer, section 10); ReLU with He weights keeps the gain at
about 1 (He et al. 2015); ReLU with Glorot weights loses a factor ``√2`` per layer.

We report, per depth, ``ratio = ‖∂L/∂h_1‖ / ‖∂L/∂h_d‖`` (activation gradients:
the signal the chain rule carries) and ``weight_ratio = ‖∂L/∂W_1‖ / ‖∂L/∂W_d‖``.
The two differ: ``∂L/∂Wₗ = h_{l-1}ᵀ δₗ`` also scales with the forward
activations, and for a positively homogeneous ReLU net the forward and
backward scales cancel, so ``weight_ratio`` stays near 1 whatever the
initial scale.

All depths ``1 … D`` are separate MLPs, but share one compiled function per
activation: the ``D`` layers are stacked and scanned, and layer ``l`` is skipped
(identity, by ``jnp.where``: a ``lax.cond`` compiled 4× slower) when ``l ≥ d``, so ``d`` is data, not a shape. Layer
``l`` of the depth-``d`` MLP draws its weights from
``fold_in(fold_in(fold_in(key(seed), d), 0), l)`` (its head from
``fold_in(fold_in(key(seed), d), 1)``), independent of ``D``; the batch
comes from ``fold_in(key(seed), 0)``.

References:
  Glorot & Bengio (2010), Understanding the difficulty of training deep feedforward neural networks.
  He, Zhang, Ren, Sun (2015), Delving deep into rectifiers.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from explain.io import atomic_write_bytes, atomic_write_text

Activation = Literal["sigmoid", "tanh", "relu"]
Init = Literal["normal", "glorot", "he", "lecun"]
Stage = Literal["init", "trained"]

ACTIVATIONS = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "relu": jax.nn.relu}
INITS = {
    "normal": jax.nn.initializers.normal(1.0),  # standard normal
    "glorot": jax.nn.initializers.glorot_normal(),
    "he": jax.nn.initializers.he_normal(),
    "lecun": jax.nn.initializers.lecun_normal(),
}
CSV_FIELDS = (
    "activation",
    "init",
    "stage",
    "depth",
    "ratio",
    "weight_ratio",
    "first_grad_norm",
    "last_grad_norm",
    "loss",
    "seed",
    "width",
    "batch",
    "steps",
    "learning_rate",
)


class DepthRow(NamedTuple):
    """One MLP of one depth at one stage; the ratios are first layer over last layer."""

    activation: str
    init: str
    stage: str
    depth: int
    ratio: float
    weight_ratio: float
    first_grad_norm: float
    last_grad_norm: float
    loss: float
    seed: int
    width: int
    batch: int
    steps: int
    learning_rate: float


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"expected {name} >= {minimum} (an int), got {value!r}")
    return int(value)


def _check_choice(name: str, value: str, table: dict) -> str:
    if value not in table:
        raise ValueError(f"unknown {name} {value!r}; expected one of {list(table)}")
    return value


@functools.partial(jax.jit, static_argnames=("init", "depth", "width", "num_classes"))
def init_mlp(key: jax.Array, init: Init, depth: int, *, width: int, num_classes: int) -> dict:
    """Params of a depth-``depth`` MLP: ``w (D, W, W)``, ``b (D, W)``, ``head_w (W, K)``, ``head_b (K,)``; biases zero."""
    init_fn = INITS[_check_choice("init", init, INITS)]
    layer_key, head_key = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    layer_keys = jax.vmap(lambda i: jax.random.fold_in(layer_key, i))(jnp.arange(depth))
    return {
        "w": jax.vmap(lambda k: init_fn(k, (width, width)))(layer_keys),
        "b": jnp.zeros((depth, width)),
        "head_w": init_fn(head_key, (width, num_classes)),
        "head_b": jnp.zeros((num_classes,)),
    }


def mlp_apply(params: dict, x: jax.Array, depth: jax.Array, deltas: jax.Array, activation: Activation) -> jax.Array:
    """Logits ``(N, K)`` of the first ``depth`` layers of ``params``; ``deltas (D, N, W)`` is added to each ``hₗ``.

    The gradient with respect to a zero ``deltas[l]`` is ``∂L/∂hₗ`` (for ``l < depth``).
    """
    act = ACTIVATIONS[activation]

    def step(h, inp):
        i, w, b, delta = inp
        active = i < depth
        # Skipped layers see zeros, so their (unused) branch stays finite and passes no NaN back through where.
        h_in = jnp.where(active, h, 0.0)
        h = jnp.where(active, act(h_in @ w + b) + delta, h)
        return h, None

    n_layers = params["w"].shape[0]
    h, _ = jax.lax.scan(step, x, (jnp.arange(n_layers), params["w"], params["b"], deltas))
    return h @ params["head_w"] + params["head_b"]


def _norms(g: jax.Array) -> jax.Array:
    """``(D, a, b) -> (D,)`` Frobenius norms, scaled by the max first: squares of 1e-20 flush to zero in float32."""
    m = jnp.max(jnp.abs(g), axis=(1, 2), keepdims=True)
    safe = jnp.where(m > 0, m, 1.0)
    return m[:, 0, 0] * jnp.sqrt(jnp.sum((g / safe) ** 2, axis=(1, 2)))


def _loss(params, deltas, x, y, depth, activation: Activation):
    logits = mlp_apply(params, x, depth, deltas, activation)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _measure(params, x, y, depth, activation: Activation):
    deltas = jnp.zeros((params["w"].shape[0], *x.shape), x.dtype)
    loss, (g_params, g_deltas) = jax.value_and_grad(_loss, argnums=(0, 1))(params, deltas, x, y, depth, activation)
    return loss, _norms(g_deltas), _norms(g_params["w"])


def run_depth(params, x, y, depth, *, activation: Activation, steps: int, learning_rate: float):
    """Pure: ``(loss, ‖∂L/∂hₗ‖, ‖∂L/∂Wₗ‖)`` before and after ``steps`` Adam steps of the depth-``depth`` MLP."""
    before = _measure(params, x, y, depth, activation)
    if steps == 0:
        return before, before
    tx = optax.adam(learning_rate)

    def train_step(carry, _):
        params, opt_state = carry
        deltas = jnp.zeros((params["w"].shape[0], *x.shape), x.dtype)
        grads = jax.grad(_loss)(params, deltas, x, y, depth, activation)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    (params, _), _ = jax.lax.scan(train_step, (params, tx.init(params)), None, length=steps)
    return before, _measure(params, x, y, depth, activation)


_run_depth = jax.jit(run_depth, static_argnames=("activation", "steps", "learning_rate"))


@functools.cache
def _data(seed: int, width: int, batch: int, num_classes: int) -> tuple[jax.Array, jax.Array]:
    kx, kt = jax.random.split(jax.random.fold_in(jax.random.key(seed), 0))
    x = jax.random.normal(kx, (batch, width))
    teacher = jax.random.normal(kt, (width, num_classes))
    return x, jnp.argmax(x @ teacher, axis=1)


def depth_rows(
    activation: Activation,
    init: Init,
    depth: int,
    *,
    max_depth: int | None = None,
    width: int = 64,
    batch: int = 128,
    num_classes: int = 10,
    steps: int = 5,
    learning_rate: float = 1e-2,
    seed: int = 0,
) -> tuple[DepthRow, DepthRow]:
    """The depth-``depth`` MLP at initialisation and after ``steps`` Adam steps on one batch.

    Args:
      activation: ``"sigmoid"``, ``"tanh"`` or ``"relu"``.
      init: ``"normal"`` (standard normal), ``"glorot"``, ``"he"`` or ``"lecun"`` (normal variants, zero biases).
      depth: number of hidden layers, ``>= 1``.
      max_depth: the scan length (default ``depth``); equal values share one compile across depths.
      width, batch, num_classes: layer width (= input features), batch size, classes.
      steps, learning_rate: full-batch ``optax.adam`` steps before the second measurement.
      seed: data from ``fold_in(key(seed), 0)``; weights from ``fold_in(key(seed), depth)`` per layer.

    Returns:
      ``(at_init, trained)`` :class:`DepthRow` values.

    Raises:
      ValueError: depth < 1, ``depth > max_depth``, unknown activation or init, non-positive sizes.
    """
    _check_choice("activation", activation, ACTIVATIONS)
    _check_choice("init", init, INITS)
    depth = _check_int("depth", depth, 1)
    max_depth = depth if max_depth is None else _check_int("max_depth", max_depth, 1)
    if depth > max_depth:
        raise ValueError(f"expected depth <= max_depth, got depth={depth}, max_depth={max_depth}")
    for name, value in (("width", width), ("batch", batch), ("num_classes", num_classes)):
        _check_int(name, value, 1)
    steps = _check_int("steps", steps, 0)
    if not learning_rate > 0:
        raise ValueError(f"expected learning_rate > 0, got {learning_rate}")

    x, y = _data(seed, width, batch, num_classes)
    params = init_mlp(
        jax.random.fold_in(jax.random.key(seed), depth), init, max_depth, width=width, num_classes=num_classes
    )
    before, after = _run_depth(
        params, x, y, jnp.asarray(depth), activation=activation, steps=steps, learning_rate=float(learning_rate)
    )
    rows = []
    for stage, (loss, act_norms, w_norms) in (("init", before), ("trained", after)):
        act_norms, w_norms = np.asarray(act_norms, np.float64), np.asarray(w_norms, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = act_norms[0] / act_norms[depth - 1]
            weight_ratio = w_norms[0] / w_norms[depth - 1]
        rows.append(
            DepthRow(
                activation, init, stage, depth, float(ratio), float(weight_ratio), float(act_norms[0]),
                float(act_norms[depth - 1]), float(loss), int(seed), width, batch, steps, float(learning_rate),
            )
        )  # fmt: skip
    return rows[0], rows[1]


def depth_experiment(
    *,
    max_depth: int = 30,
    activations: Sequence[Activation] = ("sigmoid", "tanh", "relu"),
    inits: Sequence[Init] = ("normal", "glorot", "he"),
    width: int = 64,
    batch: int = 128,
    num_classes: int = 10,
    steps: int = 5,
    learning_rate: float = 1e-2,
    seed: int = 0,
) -> list[DepthRow]:
    """Every ``(activation, init, depth 1 … max_depth)`` at initialisation and after ``steps`` optax steps.

    One compile per activation serves all inits and depths (see module doc).
    Arguments as :func:`depth_rows`.

    Returns:
      ``2 · len(activations) · len(inits) · max_depth`` rows.
    """
    max_depth = _check_int("max_depth", max_depth, 1)
    for a in activations:
        _check_choice("activation", a, ACTIVATIONS)
    for i in inits:
        _check_choice("init", i, INITS)
    rows: list[DepthRow] = []
    for a in activations:
        for i in inits:
            for d in range(1, max_depth + 1):
                opts = dict(width=width, batch=batch, num_classes=num_classes, steps=steps, learning_rate=learning_rate)
                rows.extend(depth_rows(a, i, d, max_depth=max_depth, seed=seed, **opts))
    return rows


def write_csv(rows: Sequence[DepthRow], path: str | Path) -> Path:
    """Writes rows with a header of :data:`CSV_FIELDS`, atomically (:func:`explain.io.atomic_write_text`)."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(CSV_FIELDS)
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def plot(rows: Sequence[DepthRow], path: str | Path) -> Path:
    """One panel per activation: ratio against depth (log scale), a line per init, dashed after training.

    The sigmoid panel also shows the bound ``0.25^(d-1)`` on the product of ``d - 1`` sigmoid derivatives.
    """
    from matplotlib.figure import Figure  # the object-oriented API: no backend, no pyplot state

    acts = list(dict.fromkeys(r.activation for r in rows))
    fig = Figure(figsize=(5 * len(acts), 4))
    axes = fig.subplots(1, len(acts), squeeze=False, sharey=True)
    for ax, act in zip(axes[0], acts):
        for k, init in enumerate(dict.fromkeys(r.init for r in rows if r.activation == act)):
            for stage, style in (("init", "-"), ("trained", "--")):
                sel = [r for r in rows if (r.activation, r.init, r.stage) == (act, init, stage)]
                if sel:
                    ax.plot(
                        [r.depth for r in sel], [r.ratio for r in sel], style, color=f"C{k}", label=f"{init} ({stage})"
                    )
        if act == "sigmoid":
            d = np.arange(1, max(r.depth for r in rows) + 1)
            ax.plot(d, 0.25 ** (d - 1.0), ":", color="k", label="0.25^(d-1)")
        ax.set_yscale("log")
        ax.axhspan(0.1, 10, color="0.9", zorder=0)
        ax.set_title(act)
        ax.set_xlabel("depth d")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("‖∂L/∂h₁‖ / ‖∂L/∂h_d‖")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    return atomic_write_bytes(path, png.getvalue())
