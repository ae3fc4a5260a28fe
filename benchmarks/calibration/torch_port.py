"""Rebuild an exported Keras model (export_weights.py) as a PyTorch module.

Layout: Keras is channels-last, PyTorch channels-first. Conversions:

- Conv2D kernel ``(kh, kw, in, out)`` -> ``(out, in, kh, kw)``; 'same' padding
  with TF/XLA's rule (``ceil(n / s)`` outputs, the odd padding element at the
  end): symmetric padding in ``nn.Conv2d`` when it is symmetric, otherwise an
  ``nn.ZeroPad2d`` before the convolution;
- a Dense layer fed by Flatten of a ``(H, W, C)`` map: its kernel rows are
  reordered from Keras's ``(H, W, C)`` flattening order to PyTorch's
  ``(C, H, W)``; weight ``(in, out)`` -> ``(out, in)``;
- BatchNormalization -> ``nn.BatchNorm2d`` (eps from Keras, 1e-3 by default;
  gamma, beta, moving mean and variance as running statistics; eval mode);
- ReLU (an ``activation="relu"``, ``ReLU`` or ``Activation("relu")``) ->
  an ``nn.ReLU`` module, so that SpikingJelly's converters find it;
- AveragePooling2D -> ``nn.AvgPool2d``; GlobalAveragePooling2D ->
  ``nn.AdaptiveAvgPool2d(1)`` + ``nn.Flatten``; Add -> ``+``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent


def _pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


def _same_padding(size, kernel, stride, dilation):
    span = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


class KerasPort(nn.Module):
    """The layer graph of an exported Keras model, channels-first."""

    def __init__(self, graph: dict, arrays):
        super().__init__()
        self.order = []  # (layer name, module attribute names, inbound names)
        self.input_name = graph["inputs"][0]
        self.output_name = graph["outputs"][0]
        by_name = {layer["name"]: layer for layer in graph["layers"]}
        for layer in graph["layers"]:
            kind, cfg = layer["class"], layer["config"]
            if kind == "InputLayer":
                continue
            w = [np.asarray(arrays[v["key"]], "float32") for v in layer["weights"]]
            mods = []
            if kind == "Conv2D":
                assert cfg.get("data_format", "channels_last") == "channels_last"
                assert cfg.get("groups", 1) == 1
                k, s, d = (_pair(cfg[x]) for x in ("kernel_size", "strides",
                                                    "dilation_rate"))  # fmt: skip
                h, wd, cin = layer["input_shapes"][0]
                pad = (0, 0)
                if cfg["padding"] == "same":
                    ph = _same_padding(h, k[0], s[0], d[0])
                    pw = _same_padding(wd, k[1], s[1], d[1])
                    if ph[0] == ph[1] and pw[0] == pw[1]:
                        pad = (ph[0], pw[0])
                    else:
                        mods.append(nn.ZeroPad2d((pw[0], pw[1], ph[0], ph[1])))
                conv = nn.Conv2d(cin, cfg["filters"], k, s, pad, d,
                                 bias=cfg["use_bias"])  # fmt: skip
                conv.weight.data = torch.from_numpy(w[0].transpose(3, 2, 0, 1).copy())
                if cfg["use_bias"]:
                    conv.bias.data = torch.from_numpy(w[1])
                mods.append(conv)
            elif kind == "Dense":
                kernel = w[0]
                source = by_name[layer["inbound"][0]]
                if source["class"] == "Flatten" and len(source["input_shapes"][0]) == 3:
                    hh, ww, cc = source["input_shapes"][0]
                    kernel = (kernel.reshape(hh, ww, cc, -1).transpose(2, 0, 1, 3)
                              .reshape(hh * ww * cc, -1))  # fmt: skip
                lin = nn.Linear(kernel.shape[0], kernel.shape[1], bias=cfg["use_bias"])
                lin.weight.data = torch.from_numpy(kernel.T.copy())
                if cfg["use_bias"]:
                    lin.bias.data = torch.from_numpy(w[1])
                mods.append(lin)
            elif kind == "BatchNormalization":
                assert cfg["axis"] in (-1, 3, [3], [-1]), cfg["axis"]
                channels = layer["output_shape"][-1]
                bn = nn.BatchNorm2d(channels, eps=cfg["epsilon"])
                i = 0
                if cfg["scale"]:
                    bn.weight.data = torch.from_numpy(w[i])
                    i += 1  # noqa: E702
                if cfg["center"]:
                    bn.bias.data = torch.from_numpy(w[i])
                    i += 1  # noqa: E702
                bn.running_mean.data = torch.from_numpy(w[i])
                bn.running_var.data = torch.from_numpy(w[i + 1])
                mods.append(bn)
            elif kind == "ReLU":
                assert cfg.get("max_value") is None
                assert not cfg.get("negative_slope") and not cfg.get("threshold")
                mods.append(nn.ReLU())
            elif kind == "Activation":
                assert cfg["activation"] in ("relu", "linear"), cfg
                if cfg["activation"] == "relu":
                    mods.append(nn.ReLU())
            elif kind == "Flatten":
                mods.append(nn.Flatten())
            elif kind == "AveragePooling2D":
                assert cfg["padding"] == "valid"
                pool = _pair(cfg["pool_size"])
                stride = _pair(cfg["strides"] or cfg["pool_size"])
                mods.append(nn.AvgPool2d(pool, stride))
            elif kind == "GlobalAveragePooling2D":
                assert not cfg.get("keepdims")
                mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            elif kind == "Add":
                pass
            else:
                raise NotImplementedError(f"layer {layer['name']} of type {kind}")
            if cfg.get("activation") == "relu" and kind in ("Conv2D", "Dense"):
                mods.append(nn.ReLU())
            elif cfg.get("activation") not in (None, "linear", "relu"):
                raise NotImplementedError(f"activation {cfg['activation']}")
            attrs = []
            for j, mod in enumerate(mods):
                attr = f"{layer['name']}_{j}".replace("/", "_").replace(".", "_")
                self.add_module(attr, mod)
                attrs.append(attr)
            self.order.append((layer["name"], kind, attrs, layer["inbound"]))

    def forward(self, x):
        env = {self.input_name: x}
        for name, kind, attrs, inbound in self.order:
            args = [env[n] for n in inbound]
            if kind == "Add":
                y = args[0]
                for other in args[1:]:
                    y = y + other
            else:
                (y,) = args
                for attr in attrs:
                    y = getattr(self, attr)(y)
            env[name] = y
        return env[self.output_name]


def load(name: str, models=HERE / "models"):
    """``(module in eval mode, graph dict, keras logits on the test set)``."""
    graph = json.loads((Path(models) / f"{name}.graph.json").read_text())
    with np.load(Path(models) / f"{name}.npz") as arrays:
        arrays = dict(arrays)
    module = KerasPort(graph, arrays).eval()
    return module, graph, arrays["__logits__"]


def to_torch_images(x: np.ndarray) -> torch.Tensor:
    """``(n, H, W, C)`` channels-last numpy -> ``(n, C, H, W)`` float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
