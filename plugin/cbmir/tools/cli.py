"""The `cbmir` command: one sub-command per task, each in its own module.

Sub-command modules expose `add_arguments(parser)` and `run(args) -> int` and are
imported only when chosen, so `cbmir import` works without torch installed.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Training commands live in the torch package.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("cbmir_train.commands.train", "train the retrieval network on a manifest"),
    "evaluate": ("cbmir_train.commands.evaluate", "mAP and P@k of a model on manifest splits"),
    "export": ("cbmir_train.commands.export", "export a checkpoint to ONNX with its model card"),
    "quantize": ("cbmir_train.commands.quantize", "static INT8 quantization of an ONNX model"),
    "benchmark": ("cbmir_train.commands.benchmark", "5-fold figshare retrieval benchmark"),
    "embed": ("cbmir.tools.commands.embed", "embed the images of a manifest with an ONNX model"),
    "import": ("cbmir.tools.commands.import_images", "turn labelled images into DICOM and store them"),
    "demo": ("cbmir.tools.commands.demo", "download the public figshare set and import it"),
    "verify": ("cbmir.tools.commands.verify", "check a running index against its images (admin)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cbmir", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)  # prints usage / error and exits
        return 2
    name, rest = argv[0], argv[1:]
    module_name, help_text = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        print(f"cbmir {name}: missing dependency '{error.name}'. "
              "Training commands need the training extras: `make venv-train` "
              "(or `pip install -e .[train]`).", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"cbmir {name}", description=help_text)
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(rest)) or 0)


if __name__ == "__main__":
    sys.exit(main())
