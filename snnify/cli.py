"""The ``snnify`` command line (docs/cli.md).

Sub-commands: ``demo`` (the tutorial end to end), ``convert`` (a Keras model
file -> a saved spiking network), ``evaluate`` (a saved network on a data
set), ``sweep`` (accuracy, steps and energy over calibrations) and
``export-nir`` (a saved network -> a NIR file). Bad input ends the command
with a one-line reason and exit status 1 (2 for a bad command line); outputs
are written next to their destination and renamed, never left half written.

Example:
    >>> from snnify.cli import build_parser
    >>> args = build_parser().parse_args(["demo", "--quick", "--out", "/tmp/x"])
    >>> args.command, args.quick, args.out
    ('demo', True, '/tmp/x')
    >>> args = build_parser().parse_args(["convert", "m.keras", "-o", "n.keras"])
    >>> args.steps, args.neuron  # None: integrate-and-fire, or QCFS's own
    (8, None)
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import sys
import textwrap
from fractions import Fraction

BACKENDS = ("jax", "tensorflow", "torch")
NEURONS = ("integrate-and-fire", "signed-integrate-and-fire", "spiking-relu", "lif")
# set in the environment of a re-executed process, so it never loops
_REEXEC_FLAG = "_SNNIFY_CLI_REEXEC"


class CommandError(Exception):
    """Bad input to a command: its message is the one line the user sees."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _spike_budget(text: str) -> int | str:
    """An integer (checked by convert_for_steps) or "auto"."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'must be an integer or "auto", got {text}'
        ) from None


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"must be a number, got {text}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(
            f"must be an integer from 0 to 2**32 - 1, got {text}"
        )
    return value


def _steps_list(text: str) -> list:
    try:
        steps = sorted({int(t) for t in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be step counts separated by commas (e.g. 1,2,4,8), got {text}"
        ) from None
    if steps[0] < 1:
        raise argparse.ArgumentTypeError(f"step counts must be >= 1, got {text}")
    return steps


def _version() -> str:
    try:
        return importlib.metadata.version("snnify")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


def _subcommand(subcommands, name, help, description, example):
    return subcommands.add_parser(
        name,
        help=help,
        description=textwrap.fill(description, 79),
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# the arrays looked for in an .npz file, in order
TRAINING_KEYS = ("x", "x_train", "x_test")
TEST_KEYS = ("x", "x_test", "x_train")
LABEL_KEYS = ("y", "y_test", "y_train")


def _data_options(parser, what: str, keys: tuple) -> None:
    parser.add_argument(
        "--x-key",
        metavar="KEY",
        default=None,
        help=f"array of the {what} inputs in the .npz file (default: the first of "
        f"{', '.join(keys)})",
    )
    parser.add_argument(
        "--input-scale",
        type=_positive_float,
        metavar="S",
        default=1.0,
        help="multiply the inputs by S, e.g. 1/255 for images stored as 0..255 "
        "(default: 1)",
    )
    parser.add_argument(
        "--n",
        type=_positive_int,
        metavar="N",
        default=None,
        help="use the first N examples only (default: all)",
    )


def _model_argument(parser) -> None:
    parser.add_argument("model", help="the Keras model file (.keras or .h5)")
    _custom_objects_option(parser)


def _network_argument(parser) -> None:
    parser.add_argument("network", help="a saved network (snnify convert)")
    _custom_objects_option(parser)


def _custom_objects_option(parser) -> None:
    parser.add_argument(
        "--custom-objects",
        metavar="FILE.py",
        default=None,
        help="a Python file defining the model's own classes (layers, models, "
        "activations); it is run first, and loading finds them by name",
    )


def _output_option(parser, what: str) -> None:
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help=what)


def _steps_option(parser, default: int | None, help: str) -> None:
    parser.add_argument(
        "--steps", type=_positive_int, metavar="N", default=default, help=help
    )


def _labels_option(parser) -> None:
    parser.add_argument(
        "--y-key",
        metavar="KEY",
        default=None,
        help=f"array of the labels (default: the first of {', '.join(LABEL_KEYS)})",
    )


def _backend_option(parser) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="Keras backend (default: $KERAS_BACKEND if set, else jax if it is "
        "installed, else Keras's own default)",
    )


def _add_demo(subcommands) -> None:
    demo = _subcommand(
        subcommands,
        "demo",
        "run the Keras-to-SNN tutorial end to end and write a report",
        "Train a small convolutional network on MNIST, convert it to spiking "
        "neurons in every configuration of the Keras-to-SNN tutorial "
        "(presentation time, synapses, firing-rate scaling, firing-rate "
        "regularisation), print a table of accuracy, firing rates and time, "
        "and write figures and an index.html into the output folder. Runs "
        "offline with the MNIST subset bundled with snnify.",
        "snnify demo --quick --out demo-output",
    )
    demo.add_argument(
        "--out",
        metavar="DIR",
        default="snnify-demo",
        help="output folder for the figures, index.html and parameters "
        "(default: ./snnify-demo)",
    )
    demo.add_argument(
        "--n-test",
        type=_positive_int,
        metavar="N",
        default=None,
        help="test images to simulate (default: 1000, or 50 with --quick; "
        "10000 is the whole test set; docs/tutorial.md gives its run time)",
    )
    _backend_option(demo)
    demo.add_argument(
        "--full-mnist",
        action="store_true",
        help="train on the full MNIST set (60,000 images, downloaded by "
        "keras.datasets once) instead of the bundled 10,000",
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 2000 training images, 1 regularised epoch, 50 test "
        "images, a fifth of the steps (about a minute)",
    )
    demo.add_argument(
        "--epochs",
        type=_positive_int,
        metavar="N",
        default=None,
        help="training epochs (default: 2, as the tutorial)",
    )
    demo.add_argument(
        "--regularized-epochs",
        type=_positive_int,
        metavar="N",
        default=None,
        help="epochs of the firing-rate regularised training (default: 10, 1 with "
        "--quick)",
    )
    demo.add_argument(
        "--n-train",
        type=_positive_int,
        metavar="N",
        default=None,
        help="training images (default: all, 2000 with --quick)",
    )
    demo.add_argument(
        "--figures",
        type=_count,
        metavar="N",
        default=1,
        help="test images drawn per configuration (default: 1)",
    )
    demo.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")


def _add_convert(subcommands) -> None:
    convert = _subcommand(
        subcommands,
        "convert",
        "convert a Keras model file into a saved spiking network",
        "Convert a trained Keras model (.keras or .h5) into a spiking network and "
        "save it whole (.keras). Its ReLU activations become spiking neurons whose "
        "firing-rate scales are calibrated automatically for --steps steps on the "
        "--data inputs (snnify.calibrate.convert_for_steps), or set with --scale. "
        "A model fine-tuned with QCFS layers (snnify.fine_tune) needs neither: its "
        "trained thresholds give the scales (snnify.convert_quantized), exact when "
        "--steps divides its levels.",
        "snnify convert mnist.keras --data mnist-train.npz --n 1000 "
        "--input-scale 1/255 --steps 8 -o mnist-snn.keras",
    )
    _model_argument(convert)
    _output_option(convert, "the network (.keras)")
    _steps_option(
        convert, 8, "steps the network will run, calibrated for and stored (default: 8)"
    )
    convert.add_argument(
        "--data", metavar="FILE", help="calibration inputs (.npz, e.g. training data)"
    )
    convert.add_argument(
        "--scale",
        type=_positive_float,
        metavar="S",
        default=None,
        help="a fixed scale_firing_rates for every layer instead of calibration",
    )
    convert.add_argument(
        "--neuron",
        choices=NEURONS,
        default=None,
        help="the spiking neuron of every ReLU (default: integrate-and-fire; "
        "signed-integrate-and-fire takes back spikes with negative ones: more "
        "accurate at few steps, not exportable to NIR; QCFS models: signed, "
        "levels / steps spikes per step at most)",
    )
    convert.add_argument(
        "--spikes-per-step",
        type=_spike_budget,
        metavar="K",
        default="auto",
        help="the most spikes per step the calibrated thresholds are chosen for: 1 "
        "for fewer spikes, more for finer activations; auto: 2, or 4 where the "
        "output's relative error with 2 is above 0.1 on --data (default: auto)",
    )
    convert.add_argument(
        "--synapse",
        type=_positive_float,
        metavar="TAU",
        default=None,
        help="a low-pass synapse of time constant TAU seconds after every layer",
    )
    convert.add_argument(
        "--dt",
        type=_positive_float,
        default=0.001,
        help="the time step the network will run with, in seconds (default: 0.001)",
    )
    _data_options(convert, "calibration", TRAINING_KEYS)
    _backend_option(convert)


def _add_evaluate(subcommands) -> None:
    evaluate = _subcommand(
        subcommands,
        "evaluate",
        "run a saved network on a data set: accuracy, firing rates, SynOps",
        "Simulate a saved spiking network on the inputs of an .npz file and print, "
        "per layer and per inference, the spikes, firing rates and synaptic "
        "operations, the energy estimate and, with labels, the accuracy.",
        "snnify evaluate mnist-snn.keras mnist-test.npz --n 1000 --input-scale 1/255",
    )
    _network_argument(evaluate)
    evaluate.add_argument("data", help="inputs and labels (.npz)")
    _steps_option(evaluate, None, "steps to simulate (default: the network's)")
    _labels_option(evaluate)
    evaluate.add_argument(
        "--json", metavar="FILE", help="also write the measurements to FILE (.json)"
    )
    _data_options(evaluate, "test", TEST_KEYS)
    _backend_option(evaluate)


def _add_sweep(subcommands) -> None:
    sweep = _subcommand(
        subcommands,
        "sweep",
        "accuracy, spikes and energy over steps and calibrations: table and plot",
        "Convert a Keras model once per calibration setting, simulate each on the "
        "test data for the largest step count and read the smaller ones off the "
        "same run. Prints the table and the cheapest setting within --tolerance "
        "of the non-spiking accuracy; writes sweep.md and sweep.png to --out.",
        "snnify sweep mnist.keras mnist-test.npz --calibration mnist-train.npz "
        "--n 500 --input-scale 1/255 --steps 2,4,8,16 --out sweep",
    )
    _model_argument(sweep)
    sweep.add_argument("data", help="test inputs and labels (.npz)")
    sweep.add_argument(
        "--calibration",
        metavar="FILE",
        required=True,
        help="calibration inputs (.npz; the first 1000 are used)",
    )
    sweep.add_argument(
        "--steps",
        type=_steps_list,
        default=[1, 2, 4, 8, 16, 32],
        metavar="LIST",
        help="step counts (default: 1,2,4,8,16,32)",
    )
    sweep.add_argument(
        "--percentiles",
        type=float,
        nargs="+",
        default=[99.9],
        metavar="P",
        help="calibration percentiles, one setting each (default: 99.9)",
    )
    sweep.add_argument(
        "--per-channel",
        action="store_true",
        help="also try one scale per channel for every percentile",
    )
    sweep.add_argument(
        "--tolerance",
        type=float,
        default=0.003,
        help="accuracy loss allowed for the best setting (default: 0.003)",
    )
    sweep.add_argument(
        "--out", metavar="DIR", default="snnify-sweep", help="output folder"
    )
    _labels_option(sweep)
    _data_options(sweep, "test", TEST_KEYS)
    _backend_option(sweep)


def _add_export_nir(subcommands) -> None:
    export = _subcommand(
        subcommands,
        "export-nir",
        "write a saved network as a NIR graph",
        "Write a saved spiking network as a NIR file (Neuromorphic Intermediate "
        "Representation), readable by Sinabs, snnTorch, Norse, Rockpool, Lava and "
        "other simulators and chips (docs/nir.md).",
        "snnify export-nir mnist-snn.keras -o mnist-snn.nir",
    )
    _network_argument(export)
    _output_option(export, "the NIR file")
    export.add_argument(
        "--dt",
        type=_positive_float,
        default=None,
        help="time step in seconds (default: the network's)",
    )
    _backend_option(export)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``snnify`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="snnify",
        description="Convert Keras 3 models into spiking neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"snnify {_version()}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(subcommands)
    _add_convert(subcommands)
    _add_evaluate(subcommands)
    _add_sweep(subcommands)
    _add_export_nir(subcommands)
    return parser


def _wanted_backend(requested: str | None) -> str | None:
    if requested:
        return requested
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    if importlib.util.find_spec("jax") is not None:
        return "jax"
    return None


# the module that each backend needs
BACKEND_MODULES = {"jax": "jax", "tensorflow": "tensorflow", "torch": "torch"}


def _backend_installed(backend: str) -> bool:
    module = BACKEND_MODULES.get(backend)
    return module is None or importlib.util.find_spec(module) is not None


def _select_backend(backend: str | None, argv: list) -> None:
    """Make Keras use ``backend``, re-running the command if Keras is loaded.

    Keras reads ``KERAS_BACKEND`` once, when it is first imported; importing
    snnify imports Keras, so a different backend needs a fresh process.
    """
    if backend is None:
        return
    if not _backend_installed(backend):
        raise CommandError(
            f"the {backend} backend needs the {BACKEND_MODULES[backend]} package, "
            f"which is not installed: pip install 'snnify[{backend}]', or choose "
            f"another --backend ({', '.join(BACKENDS)})"
        )
    os.environ["KERAS_BACKEND"] = backend
    keras = sys.modules.get("keras")
    if keras is None or keras.backend.backend() == backend:
        return
    if os.environ.get(_REEXEC_FLAG):
        raise SystemExit(
            f"snnify: could not switch Keras to the {backend!r} backend "
            f"(it is {keras.backend.backend()!r}). Set KERAS_BACKEND={backend} "
            "before starting Python."
        )
    os.environ[_REEXEC_FLAG] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    command = [sys.executable, "-m", "snnify", *argv]
    os.execv(sys.executable, command)


# --- inputs and outputs ------------------------------------------------------
def _existing_file(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise CommandError(f"{what} {path!r} does not exist")
    return path


def _output_path(path: str, suffix: str | None = None) -> str:
    """Check an output file's folder exists (and its suffix) before any work."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CommandError(f"the folder of {path!r} does not exist")
    if suffix and not path.endswith(suffix):
        raise CommandError(f"the output must end in {suffix}, got {path!r}")
    return path


def _output_folder(path: str, option: str = "--out") -> str:
    """Check an output folder can be made (an existing folder, or a new name)."""
    if not path.strip():
        raise CommandError(f"{option} must name a folder, got {path!r}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise CommandError(f"{option} {path!r} is a file; give a folder")
    return path


# what `snnify demo` writes, besides a PNG per configuration and image
DEMO_FILES = ("index.html", "table.md", "results.json", "accuracy.png")


def _demo_folder(path: str) -> None:
    """Say what the demo writes into ``path``; refuse to replace others' files."""
    _output_folder(path)
    existing = [f for f in DEMO_FILES if os.path.exists(os.path.join(path, f))]
    earlier = _is_demo_output(os.path.join(path, "results.json"))
    if existing and not earlier:
        raise CommandError(
            f"{path!r} holds {', '.join(existing)}, not written by snnify demo; "
            "choose another --out or move them"
        )
    replaced = " (replacing those of the earlier demo there)" if existing else ""
    print(
        f"snnify demo writes index.html, table.md, results.json, PNG figures and "
        f"params*.npz into {os.path.abspath(path)}{replaced}"
    )


def _is_demo_output(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as file:
            content = json.load(file)
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and set(content) == {"meta", "results"}


def _write_text(path: str, text: str) -> None:
    from snnify.export.files import write_atomically

    def write(temporary):
        with open(temporary, "w") as file:
            file.write(text)

    write_atomically(path, write)


def _load_arrays(path: str, keys: list, what: str, required: bool = True):
    """The first array of ``keys`` in an .npz file (None if absent and optional)."""
    import numpy as np

    _existing_file(path, "data file")
    try:
        file = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise CommandError(
            f"{path!r} is not an .npz file of arrays ({_first_line(error)})"
        ) from None
    if not isinstance(file, np.lib.npyio.NpzFile):
        raise CommandError(
            f"{path!r} holds a single array; save data sets with "
            "numpy.savez(path, x=inputs, y=labels)"
        )
    if not any(name.endswith(".npy") for name in file.zip.namelist()):
        file.close()
        raise CommandError(f"{path!r} is a zip file but not an .npz file of arrays")
    with file:
        names = list(file.files)
        for key in keys:
            if key in names:
                return file[key]
    if not required:
        return None
    raise CommandError(
        f"{path!r} has no {what} array: looked for {', '.join(keys)}; it has "
        f"{', '.join(names) or 'none'} (choose one with --x-key / --y-key)"
    )


def _inputs(args, model_input_shape, path: str, key_default: tuple):
    """The inputs of an .npz file as ``(n, 1, size)`` float32, scaled."""
    import numpy as np

    keys = [args.x_key] if args.x_key else list(key_default)
    x = _load_arrays(path, keys, "input")[: args.n]
    size = int(np.prod(model_input_shape))
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != size:
        raise CommandError(
            f"the inputs in {path!r} have shape {x.shape}; the model takes "
            f"{tuple(model_input_shape)} ({size} values) per example"
        )
    return x.reshape(len(x), 1, size).astype("float32") * np.float32(args.input_scale)


def _labels(args, path: str, n: int):
    import numpy as np

    keys = [args.y_key] if args.y_key else list(LABEL_KEYS)
    y = _load_arrays(path, keys, "label", required=bool(args.y_key))
    if y is None:
        return None
    from snnify.validation import class_labels

    try:  # integers or one-hot rows
        return class_labels(np.asarray(y)[: args.n], n)
    except ValueError as error:
        raise CommandError(f"the labels in {path!r}: {error}") from None


def _first_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _custom_objects(path: str | None) -> dict:
    """The classes and functions that the Python file ``path`` defines."""
    if path is None:
        return {}
    _existing_file(path, "Python file")
    spec = importlib.util.spec_from_file_location(
        os.path.splitext(os.path.basename(path))[0], path
    )
    if spec is None:
        raise CommandError(f"--custom-objects must be a Python file, got {path!r}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # whatever the user's file raises
        raise CommandError(
            f"running {path!r} failed ({type(error).__name__}: {_first_line(error)})"
        ) from None
    return {
        name: value
        for name, value in vars(module).items()
        if callable(value) and getattr(value, "__module__", None) == module.__name__
    }


def _loaded(load, path: str, what: str | None, custom_objects: str | None):
    """``load(path)`` with the classes of ``custom_objects`` known to Keras.

    A failure ends the command: "could not load PATH as WHAT (why)", or the
    first line of the error alone when ``what`` is None.
    """
    import keras

    objects = _custom_objects(custom_objects)
    try:
        with keras.saving.CustomObjectScope(objects):
            return load(path)
    except Exception as error:  # Keras raises many types for a bad file
        message = _first_line(error).split(" Full object config")[0]
        if what is not None:
            message = f"could not load {path!r} as a {what} ({message})"
        if custom_objects is None and _missing_class(error):
            message += (
                "; it uses classes of its own: give the Python file that defines "
                "them with --custom-objects FILE.py"
            )
        raise CommandError(message) from None


def _missing_class(error) -> bool:
    """Whether Keras failed on a class it does not know (in ``error``'s chain)."""
    while error is not None:
        if "Could not locate" in str(error) or "custom_objects" in str(error):
            return True
        error = error.__cause__
    return False


def _load_model(path: str, custom_objects: str | None = None):
    import keras

    import snnify
    from snnify.keras_graph import functional_graph

    _existing_file(path, "model file")
    model = _loaded(
        lambda p: keras.saving.load_model(p, compile=False),
        path,
        "Keras model",
        custom_objects,
    )
    if isinstance(model, snnify.SavedNetwork):
        raise CommandError(f"{path!r} is a saved spiking network, not a Keras model")
    try:
        inputs = functional_graph(model).inputs
    except (TypeError, ValueError) as error:  # a subclassed model that does not trace
        raise CommandError(f"the model in {path!r}: {_first_line(error)}") from None
    if len(inputs) != 1:
        raise CommandError(
            f"the model in {path!r} has {len(inputs)} inputs; the command line "
            "handles single-input models (use the Python API for others)"
        )
    return model


def _load_network(path: str, custom_objects: str | None = None):
    import snnify

    _existing_file(path, "network file")
    return _loaded(snnify.load_network, path, None, custom_objects)


def _input_shape(model) -> tuple:
    from snnify.keras_graph import functional_graph

    return tuple(int(d) for d in functional_graph(model).inputs[0].shape[1:])


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- commands -----------------------------------------------------------------
def _neuron(name: str):
    import snnify

    return {
        "integrate-and-fire": snnify.IntegrateAndFire(),
        "signed-integrate-and-fire": snnify.SignedIntegrateAndFire(),
        "spiking-relu": snnify.SpikingRectifiedLinear(initial_voltage=0.5),
        "lif": snnify.LIF(initial_voltage=0.5),
    }[name]


def run_convert(args) -> int:
    import snnify
    from snnify.calibrate import convert_for_steps, spiking_converter
    from snnify.quantize import has_qcfs_layers

    _output_path(args.output, ".keras")
    model = _load_model(args.model, args.custom_objects)
    neuron = None if args.neuron is None else _neuron(args.neuron)
    if args.scale is None and has_qcfs_layers(model):
        converter = _convert_quantized(model, neuron, args)
    elif (args.data is None) == (args.scale is None):
        raise CommandError(
            "give --data (inputs for the automatic calibration) or --scale, not "
            "both or neither"
        )
    elif args.data is not None:
        x = _inputs(args, _input_shape(model), args.data, TRAINING_KEYS)
        _progress(f"calibrating on {len(x)} examples for {args.steps} steps")
        converter = convert_for_steps(
            model, x, args.steps, spikes_per_step=args.spikes_per_step,
            neuron=neuron, synapse=args.synapse, dt=args.dt,
        )  # fmt: skip
        print(converter.calibration.summary())
    else:
        converter = spiking_converter(
            model, neuron, scale_firing_rates=args.scale, synapse=args.synapse
        )
    snnify.save_network(converter, args.output, n_steps=args.steps, dt=args.dt)
    print(f"wrote {args.output}")
    return 0


def _convert_quantized(model, neuron, args):
    """A QCFS model's conversion for ``args.steps`` (data only for ReLU layers)."""
    import snnify

    x = None
    if args.data is not None:
        x = _inputs(args, _input_shape(model), args.data, TRAINING_KEYS)
    _progress(f"QCFS layers: thresholds from the model, for {args.steps} steps")
    converter = snnify.convert_quantized(
        model, neuron, calibration_data=x, dt=args.dt, n_steps=args.steps,
        synapse=args.synapse,
    )  # fmt: skip
    print(converter.calibration.summary())
    return converter


def _merged_stats(parts):
    """One :class:`~snnify.NetworkStats` for several batches of examples."""
    n = sum(p.n_examples for p in parts)
    weights = [p.n_examples / n for p in parts]

    def mean(values):
        return sum(w * v for w, v in zip(weights, values))

    layers = [
        dataclasses.replace(
            same[0],
            spikes=mean(s.spikes for s in same),
            synops=mean(s.synops for s in same),
            mean_rate=mean(s.mean_rate for s in same),
            max_rate=max(s.max_rate for s in same),
        )
        for same in zip(*(p.layers for p in parts))
    ]
    accuracy = None if parts[0].accuracy is None else mean(p.accuracy for p in parts)
    return dataclasses.replace(
        parts[0], n_examples=n, layers=layers, accuracy=accuracy, outputs={}
    )


def run_evaluate(args) -> int:
    import keras

    import snnify

    if args.json:
        _output_path(args.json, ".json")
    saved = _load_network(args.network, args.custom_objects)
    n_steps = args.steps or saved.n_steps
    if n_steps is None:
        raise CommandError("the network has no number of steps: give --steps")
    x = _inputs(args, _input_shape(saved.model), args.data, TEST_KEYS)
    y = _labels(args, args.data, len(x))
    batch = 250
    progress = keras.utils.Progbar(len(x), unit_name="example")
    parts = []
    for start in range(0, len(x), batch):
        labels = None if y is None else y[start : start + batch]
        parts.append(
            snnify.measure(
                saved.converter,
                x[start : start + batch],
                n_steps,
                y=labels,
                dt=saved.dt,
            )
        )
        progress.add(parts[-1].n_examples)
    stats = _merged_stats(parts)
    print(f"{args.network} on {len(x)} examples of {args.data}, {n_steps} steps:")
    print(stats.summary())
    if args.json:
        report = {
            "n_examples": stats.n_examples,
            "n_steps": n_steps,
            "accuracy": stats.accuracy,
            "spikes": stats.spikes,
            "synops": stats.synops,
            "energy_nj": stats.energy() * 1e9,
            "layers": [dataclasses.asdict(layer) for layer in stats.layers],
        }
        _write_text(args.json, json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


def run_sweep(args) -> int:
    import keras

    import snnify

    _output_folder(args.out)
    _output_path(os.path.normpath(args.out))  # its parent folder must exist
    model = _load_model(args.model, args.custom_objects)
    shape = _input_shape(model)
    x = _inputs(args, shape, args.data, TEST_KEYS)
    y = _labels(args, args.data, len(x))
    if y is None:
        raise CommandError(f"{args.data!r} has no labels (y, y_test or y_train)")
    calibration_args = argparse.Namespace(**{**vars(args), "x_key": None, "n": 1000})
    calibration = _inputs(calibration_args, shape, args.calibration, TRAINING_KEYS)
    settings = {}
    for percentile in args.percentiles:
        settings[f"p{percentile:g}"] = {"percentile": percentile}
        if args.per_channel:
            settings[f"p{percentile:g} per channel"] = {
                "percentile": percentile,
                "per_channel": True,
            }
    progress = keras.utils.Progbar(len(settings), unit_name="setting")
    results = []
    for name, options in settings.items():
        results.append(
            snnify.sweep(
                model, x, y, args.steps, {name: options}, calibration_data=calibration
            )
        )
        progress.add(1)
    first = results[0]
    result = snnify.SweepResult(
        [row for r in results for row in r.rows],
        first.ann_accuracy,
        first.ann_energy_nj,
        settings,
        {key: s for r in results for key, s in r.stats.items()},
        first.energy_model,
    )
    print(result.table())
    best = result.best(tolerance=args.tolerance)
    if best is None:
        print(f"no setting is within {args.tolerance} of the ANN's accuracy")
    else:
        print(
            f"best within {args.tolerance:g} of the ANN: {best['setting']} at "
            f"{best['steps']} steps ({100 * best['accuracy']:.2f} %, "
            f"{best['energy_nj']:.4g} nJ per inference)"
        )
    os.makedirs(args.out, exist_ok=True)
    table, figure = (
        os.path.join(args.out, "sweep.md"),
        os.path.join(args.out, "sweep.png"),
    )
    _write_text(table, result.table(markdown=True) + "\n")
    from snnify.export.files import write_atomically

    write_atomically(figure, lambda p: result.plot().savefig(p, dpi=120))
    print(f"wrote {table} and {figure}")
    return 0


def run_export_nir(args) -> int:
    import snnify

    _output_path(args.output)
    saved = _load_network(args.network, args.custom_objects)
    graph = snnify.export_nir(saved.converter, args.output, dt=args.dt or saved.dt)
    kinds = {}
    for node in graph.nodes.values():
        kinds[type(node).__name__] = kinds.get(type(node).__name__, 0) + 1
    summary = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
    print(f"wrote {args.output}: {len(graph.nodes)} nodes ({summary})")
    return 0


def run_demo(args) -> int:
    from snnify.demo import run

    _demo_folder(args.out)
    return run.main(args)


COMMANDS = {
    "demo": run_demo,
    "convert": run_convert,
    "evaluate": run_evaluate,
    "sweep": run_sweep,
    "export-nir": run_export_nir,
}


def main(argv: list | None = None) -> int:
    """Run the ``snnify`` command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        _select_backend(_wanted_backend(args.backend), argv)
        return COMMANDS[args.command](args)
    except (
        CommandError,
        OSError,
        ValueError,
        TypeError,
        KeyError,
        ImportError,
    ) as error:
        print(f"snnify {args.command}: error: {_first_line(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
