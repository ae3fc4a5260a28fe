"""The ``snnify`` command line.

Example:
    >>> from snnify.cli import build_parser
    >>> args = build_parser().parse_args(["demo", "--quick", "--out", "/tmp/x"])
    >>> args.command, args.quick, args.out
    ('demo', True, '/tmp/x')
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

BACKENDS = ("jax", "tensorflow", "torch")
# set in the environment of a re-executed process, so it never loops
_REEXEC_FLAG = "_SNNIFY_CLI_REEXEC"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``snnify`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="snnify",
        description="Convert Keras 3 models into spiking neural networks.",
    )
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = subcommands.add_parser(
        "demo",
        help="run the Keras-to-SNN tutorial end to end and write a report",
        description=(
            "Train a small convolutional network on MNIST, convert it to spiking "
            "neurons in every configuration of the Keras-to-SNN tutorial "
            "(presentation time, synapses, firing-rate scaling, firing-rate "
            "regularisation), print a table of accuracy, firing rates and time, "
            "and write figures and an index.html into the output folder. Runs "
            "offline with the MNIST subset bundled with snnify."
        ),
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
        "10000 is the whole test set and takes about 20 minutes on 2 CPU cores)",
    )
    demo.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="Keras backend (default: $KERAS_BACKEND if set, else jax if it is "
        "installed, else Keras's own default)",
    )
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
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return parser


def _wanted_backend(requested: str | None) -> str | None:
    if requested:
        return requested
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    if importlib.util.find_spec("jax") is not None:
        return "jax"
    return None


def _select_backend(backend: str | None, argv: list) -> None:
    """Make Keras use ``backend``, re-running the command if Keras is loaded.

    Keras reads ``KERAS_BACKEND`` once, when it is first imported; importing
    snnify imports Keras, so a different backend needs a fresh process.
    """
    if backend is None:
        return
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


def main(argv: list | None = None) -> int:
    """Run the ``snnify`` command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "demo":
        _select_backend(_wanted_backend(args.backend), argv)
        from snnify.demo import run

        return run.main(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
