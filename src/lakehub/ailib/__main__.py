"""``python -m lakehub.ailib train NAME [--data FILE.parquet|FILE.csv | --dataset NAME]
[--no-register]``.

Trains the template in an MLflow run (tracking URI from the environment), registers it as
``ailib-NAME`` unless ``--no-register``, and prints the model's URI as the last line. A refusal
(an unknown template, data that cannot be read or lacks columns) is one line on stderr and exit
code 2; MLflow's refusal (no tracking server, no permission) is one line and exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lakehub.ailib import TemplateError, get, log, require, templates


def _read(path: str) -> Any:
    import pandas

    lower = path.lower()
    if lower.endswith((".parquet", ".pq")):
        return pandas.read_parquet(path)
    if lower.endswith((".csv", ".csv.gz")):
        return pandas.read_csv(path)
    raise TemplateError(f"cannot read {path}: use a .parquet or .csv file")


def _dataset(name: str) -> Any:
    """A catalogued dataset as pandas (the SDK notes the read: the run logs it as an input)."""
    from lakehub.client import LakeHubError
    from lakehub.datasets import get as dataset

    try:
        return dataset(name).to_pandas()
    except LakeHubError as err:
        raise TemplateError(f"cannot read dataset {name!r}: {err.detail}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lakehub.ailib",
        description="Train an AI library template in an MLflow run and register it.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a template, log it and register it")
    train.add_argument("name", help=f"one of: {', '.join(templates())}")
    train.add_argument("--data", help="a .parquet or .csv file to train on (default: the sample)")
    train.add_argument(
        "--dataset", help="a catalogued dataset to train on (logged as the run's input)"
    )
    train.add_argument("--no-register", action="store_true", help="log the model only")
    args = parser.parse_args(argv)
    try:
        template = get(args.name)
        data = None
        if args.data:
            try:
                data = _read(args.data)
            except (OSError, ValueError) as err:
                raise TemplateError(f"cannot read {args.data}: {err}") from None
            require(data, template.columns, template.name)  # before MLflow loads: at once
        from mlflow.exceptions import MlflowException

        try:
            read = None
            if args.dataset:
                name = args.dataset

                def read() -> Any:
                    frame = _dataset(name)
                    require(frame, template.columns, template.name)
                    return frame

            uri = log(args.name, data, register=not args.no_register, read=read)
        except MlflowException as err:  # the tracking server refused, or is not there
            return _fail(err, 1)
    except TemplateError as err:
        return _fail(err, 2)
    print(uri)
    return 0


def _fail(err: Exception, code: int) -> int:
    print("error: " + " ".join(str(err).split()), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
