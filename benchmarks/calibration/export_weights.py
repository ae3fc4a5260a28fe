"""Export each trained .keras model for the PyTorch side (main venv, JAX).

Writes ``models/NAME.npz`` (every layer's weights as numpy arrays, key
``LAYER/INDEX``, plus ``__logits__``: the Keras model's logits on the test set)
and ``models/NAME.graph.json`` (the layer graph: class, the config entries the
port needs, inbound layer names, input/output shapes, weight names).

    KERAS_BACKEND=jax python export_weights.py [NAME ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np

HERE = Path(__file__).resolve().parent
MODELS = HERE / "models"
KEEP = (
    "filters", "kernel_size", "strides", "padding", "dilation_rate", "groups",
    "use_bias", "activation", "units", "pool_size", "data_format", "epsilon",
    "center", "scale", "axis", "max_value", "negative_slope", "threshold",
    "keepdims",
)  # fmt: skip


def _history_names(obj, out):
    """Names of the layers whose tensors appear in an inbound-node config."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            out.append(obj["config"]["keras_history"][0])
        else:
            for value in obj.values():
                _history_names(value, out)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _history_names(value, out)
    return out


def _shape(tensor):
    return [None if d is None else int(d) for d in tensor.shape[1:]]


def export(name: str) -> None:
    model = keras.models.load_model(MODELS / f"{name}.keras")
    config = model.get_config()
    inbound = {
        layer["name"]: _history_names(layer.get("inbound_nodes", []), [])
        for layer in config["layers"]
    }
    arrays, layers = {}, []
    for layer in model.layers:
        cfg = layer.get_config()
        kept = {k: cfg[k] for k in KEEP if k in cfg}
        if "activation" in kept and not isinstance(kept["activation"], str):
            kept["activation"] = keras.activations.serialize(layer.activation)
        if isinstance(kept.get("activation"), dict):
            kept["activation"] = (
                kept["activation"]
                .get("config", {})
                .get("name", str(kept["activation"]))
            )
        weights = []
        for i, (variable, value) in enumerate(zip(layer.weights, layer.get_weights())):
            key = f"{layer.name}/{i}"
            arrays[key] = value
            weights.append({"key": key, "name": variable.name, "shape": value.shape})
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        layers.append(
            {
                "name": layer.name,
                "class": type(layer).__name__,
                "config": kept,
                "inbound": inbound.get(layer.name, []),
                "input_shapes": [_shape(t) for t in inputs]
                if type(layer).__name__ != "InputLayer" else [],
                "output_shape": _shape(layer.output),
                "weights": weights,
            }
        )  # fmt: skip
    info = json.loads((MODELS / f"{name}.json").read_text())
    with np.load(HERE / info["eval_arrays"]) as d:
        x_test, y_test = d["x_test"], d["y_test"]
    logits = model.predict(x_test, batch_size=500, verbose=0)
    arrays["__logits__"] = logits.astype("float32")
    accuracy = float(np.mean(logits.argmax(-1) == y_test))
    np.savez(MODELS / f"{name}.npz", **arrays)
    graph = {
        "name": name,
        "inputs": [t._keras_history.operation.name for t in model.inputs],
        "outputs": [t._keras_history.operation.name for t in model.outputs],
        "layers": layers,
        "keras_test_accuracy": accuracy,
        "eval_arrays": info["eval_arrays"],
    }
    text = json.dumps(graph, indent=1, default=lambda v: list(v))
    (MODELS / f"{name}.graph.json").write_text(text)
    print(f"{name}: {len(layers)} layers, {len(arrays) - 1} arrays, "
          f"Keras test accuracy {100 * accuracy:.2f} %")  # fmt: skip


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.stem for p in MODELS.glob("*.keras"))
    for n in names:
        export(n)
