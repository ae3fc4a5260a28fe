"""docs/layers.md lists every Keras layer type as the rule registry converts it."""

import importlib.util
from pathlib import Path

import keras

ROOT = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location(
        "layer_table", ROOT / "tools" / "layer_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_table_in_the_docs_is_up_to_date():
    tool = load_tool()
    text = tool.DOCS.read_text()
    assert tool.updated(text) == text, "run: python tools/layer_table.py"


def test_the_table_has_every_layer_type_once():
    table = load_tool().table()
    for name in dir(keras.layers):
        value = getattr(keras.layers, name)
        if isinstance(value, type) and issubclass(value, keras.layers.Layer):
            assert table.count(f"`{name}`") == 1, name
    rows = {line.split(" | ")[0]: line for line in table.splitlines()}
    assert "| refused |" in rows["| `StringLookup`"]
    assert "| native spiking |" in rows["| `MaxPool2D` / `MaxPooling2D`"]
    assert "| exact, non-spiking |" in rows["| `LeakyReLU`"]
    assert "| fallback |" in rows["| `LSTM`"]
