"""A user's model file, resolved by the command line as ``path/to/user_models.py:factory``."""

from __future__ import annotations

import pytest

USER_MODELS = '''
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import explain


def tabular():
    """A linear classifier: output 0 is 3·a + 1·b + 0·c, output 1 its negative; no dataset."""
    w = jnp.asarray([[3.0, -3.0], [1.0, -1.0], [0.0, 0.0]], jnp.float32)
    spec = explain.InputSpec(shape=(3,), feature_names=("a", "b", "c"))
    return explain.Model(lambda p, x: x @ p["w"], {"w": w}, spec, name="user_tabular")


class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), name="conv")(x))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(8, name="hidden")(x))
        return nn.Dense(2, name="head")(x)


def image_bundle():
    """A tiny conv net on 6x6x1 images with a dataset (.train/.test splits) and class names."""
    module = Tiny()
    variables = module.init(jax.random.key(0), jnp.zeros((1, 6, 6, 1)))
    model = explain.from_linen(
        module, variables, input_shape=(6, 6, 1), output_kind="classification", value_range=(0.0, 1.0),
        name="user_cnn",
    )
    rng = np.random.default_rng(0)
    split = lambda n: types.SimpleNamespace(
        x=rng.uniform(size=(n, 6, 6, 1)).astype(np.float32), y=rng.integers(0, 2, n).astype(np.int32)
    )
    dataset = types.SimpleNamespace(train=split(8), test=split(6))
    return types.SimpleNamespace(model=model, dataset=dataset, class_names=("left", "right"), name="user cnn")
'''


@pytest.fixture
def user_models(tmp_path):
    path = tmp_path / "user_models.py"
    path.write_text(USER_MODELS)
    return path


@pytest.fixture
def usage_error(capsys):
    """``usage_error(argv)`` runs ``main(argv)``, asserts the argparse way of refusing it (exit status 2, the
    usage, one ``python -m explain COMMAND: error: ...`` line, no traceback) and returns the message."""
    from explain.__main__ import main

    def run(argv: list[str]) -> str:
        with pytest.raises(SystemExit) as info:
            main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2, err
        assert err.startswith("usage: python -m explain") and "Traceback" not in err
        errors = [line for line in err.splitlines() if "error:" in line]
        assert len(errors) == 1 and errors[0].startswith(f"python -m explain {argv[0]}: error: "), err
        assert err.endswith(errors[0] + "\n")  # the error is the last line
        return errors[0].split(": error: ", 1)[1]

    return run
