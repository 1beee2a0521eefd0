"""Request and response bodies (pydantic): what the OpenAPI page at ``/docs`` documents, field by field.

The bodies follow KServe's V1 data plane (``{"instances": [...]}`` in, ``{"predictions": [...]}`` out) and
add the ``:explain`` and ``:attack`` verbs. Instances and arrays are typed loosely here (nested lists, or
base64 objects) and checked by :mod:`explain.serve.payloads` against the model's input spec, so that an
error names the instance that was wrong (``instances[3]``) instead of pydantic's path into a nested list.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Instances = list[Any] | dict[str, str]
INSTANCES_DOC = (
    'The inputs, (N, *input_shape): nested lists of numbers; or per instance {"b64": "<base64 PNG/JPEG/WebP>"} '
    "(image models; converted to the input spec as the dashboard's uploads are); or the whole batch as "
    '{"npy_b64": "<base64 .npy>"} in place of the list.'
)
Output = Literal["json", "npy"]
OUTPUT_DOC = 'Arrays as nested JSON lists ("json") or as {"npy_b64": "<base64 .npy>"} ("npy").'


class NpyArray(BaseModel):
    """An array as a base64 ``.npy`` file (``np.save``; read with ``np.load(..., allow_pickle=False)``)."""

    npy_b64: str = Field(description="base64 of the .npy file's bytes")


class ErrorDetail(BaseModel):
    code: int = Field(description="the HTTP status, repeated")
    message: str = Field(description="what was wrong, one line")
    field: str | None = Field(None, description='where, e.g. "instances[3]" or "parameters.steps"')


class ErrorBody(BaseModel):
    """Every error response: never a traceback."""

    error: ErrorDetail


class Health(BaseModel):
    status: str = Field(description='"alive" (liveness), "ready" or "not ready" (readiness)')


class ModelList(BaseModel):
    models: list[str] = Field(description="the served models' names, as used in the URLs")


class ModelInfo(BaseModel):
    name: str = Field(description="the name in URLs: the shipped name or the bundle's name")
    ready: bool = Field(description="loaded and, with --warmup, compiled at every batch size")
    input_shape: list[int] = Field(description="the shape of one instance")
    value_range: list[float] | None = Field(description="the declared [low, high] of inputs, or null")
    output_kind: Literal["classification", "regression"]
    class_names: list[str] | None = Field(description="one name per output class (classification)")
    feature_names: list[str] | None = Field(description="one name per feature (tabular models)")
    methods: list[str] = Field(description="the registry methods this model can run (parameters.method)")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: Instances = Field(description=INSTANCES_DOC)
    parameters: dict[str, Any] | None = Field(None, description="none are defined for predict; send {} or omit")


class PredictResponse(BaseModel):
    predictions: list[list[float]] = Field(description="the model's outputs per instance: logits (K) or values (K)")
    probabilities: list[list[float]] | None = Field(None, description="softmax of the logits (classification)")
    classes: list[str] | None = Field(None, description="the predicted class's name per instance (classification)")


class ExplainParameters(BaseModel):
    """The method and its options; any further field is an option of the method, checked against its signature
    in the registry (e.g. ``steps``, ``rule``, ``baseline`` for integrated_gradients; ``n_samples``,
    ``noise_level`` for smoothgrad; ``layer`` for grad_cam). Unknown names are refused with ``422``."""

    model_config = ConfigDict(extra="allow")

    method: str = Field("vanilla_gradient", description="a registry method, see GET /v1/models/{name} 'methods'")
    target: str | int | list[int] | None = Field(
        None,
        description='what is explained: "pred" (the predicted class; the default for classifiers, output 0 for '
        'regression), a class index, one per instance, "all" (every output), or "loss" / "loss:ce|cw|dlr|mse" '
        "(needs labels)",
    )
    labels: list[Any] | NpyArray | None = Field(None, description='per-instance labels for target "loss"')
    seed: int = Field(0, ge=0, lt=2**63, description="PRNG seed of random methods: jax.random.key(seed)")
    row_offset: int = Field(
        0,
        ge=0,
        lt=2**31,
        description="the global row number of the first instance: instance i draws the random stream of row "
        "row_offset + i (methods with per-row draws: smoothgrad, smoothgrad_sq, vargrad, expected_gradients, "
        "gradient_shap), so the chunks of a larger array get what one call on the whole array gives",
    )
    references: list[Any] | NpyArray | None = Field(
        None,
        description="expected_gradients / gradient_shap: the reference set (m, *input_shape) baselines are drawn "
        "from (default: the request's own instances)",
    )
    output: Output = Field("json", description=OUTPUT_DOC)
    heatmap: bool = Field(False, description="add a base64 PNG heatmap per instance (image models)")


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: Instances = Field(description=INSTANCES_DOC)
    parameters: ExplainParameters = Field(default_factory=ExplainParameters)


class Explanation(BaseModel):
    attribution: list[Any] | NpyArray = Field(description="shaped like the instance ((K, *input_shape) for 'all')")
    convergence_delta: float | list[float] | None = Field(
        None, description="path methods: sum(attribution) - (F(x) - F(baseline)), the completeness error"
    )
    heatmap_png_b64: str | None = Field(None, description="base64 PNG of the map, when parameters.heatmap")


class ExplainResponse(BaseModel):
    predictions: list[list[float]] = Field(description="the model's outputs per instance")
    explanations: list[Explanation] = Field(description="one per instance")
    method: str = Field(description="the method that ran")
    options: dict[str, Any] = Field(description="every option of the method, defaults included (reproducibility)")


class AttackParameters(BaseModel):
    """The attack; further fields are options of the attack function (e.g. ``restarts``, ``rel_step_size``;
    ``loss`` for apgd), checked against its signature."""

    model_config = ConfigDict(extra="allow")

    attack: Literal["fgsm", "pgd", "apgd"] = Field(description="FGSM (one step), PGD or APGD")
    eps: float = Field(ge=0, allow_inf_nan=False, description="the perturbation budget ε (in input units)")
    norm: Literal["linf", "l2"] = Field("linf", description="the ball the perturbation stays in")
    steps: int | None = Field(None, ge=1, description="iterations of pgd / apgd (their default when omitted)")
    seed: int = Field(0, ge=0, lt=2**63, description="PRNG seed of the random start: jax.random.key(seed)")
    output: Output = Field("json", description=OUTPUT_DOC)


class AttackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: Instances = Field(description=INSTANCES_DOC)
    labels: list[int] | NpyArray | None = Field(
        None, description="true classes to move away from (default: predictions)"
    )
    parameters: AttackParameters


class AttackResponse(BaseModel):
    adversarial: list[Any] | NpyArray = Field(description="the adversarial inputs, shaped like the instances")
    norms: list[float] = Field(description="‖x_adv − x‖ per instance in the attack's norm")
    predictions_before: list[list[float]] = Field(description="the model's outputs at the instances")
    predictions_after: list[list[float]] = Field(description="the model's outputs at the adversarial inputs")
    success: list[bool] = Field(description="the prediction left the label (or the prediction at the instance)")
