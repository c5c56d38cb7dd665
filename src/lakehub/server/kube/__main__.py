"""``python -m lakehub.server.kube``: write the rendered files into a directory."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from lakehub.server.config import SettingsError, load_settings
from lakehub.server.kube import KubeError, render


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (configuration files) as literal blocks."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None  # PyYAML falls back where a block cannot hold it
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def to_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lakehub.server.kube",
        description="Render LakeHub's Kubernetes manifests (for `kubectl apply -k DIR`) from "
        "its settings (DATA_DIR/lakehub.toml, LAKEHUB_CONFIG or LAKEHUB_* variables).",
    )
    p.add_argument("--out", required=True, type=Path, help="directory to write into")
    p.add_argument("--image", required=True, help="LakeHub's own image, name:tag")
    p.add_argument("--registry", required=True, help="where the notebook images are pushed")
    p.add_argument("--namespace", default="lakehub", help="default: %(default)s")
    p.add_argument("--public-url", default="", help="the front door as browsers reach it")
    p.add_argument("--sdk", default="lakehub", help="the SDK requirement in the notebook images")
    args = p.parse_args(argv)
    try:
        files = render(
            load_settings(),
            image=args.image,
            namespace=args.namespace,
            registry=args.registry,
            public_url=args.public_url,
            sdk_requirement=args.sdk,
        )
    except (KubeError, SettingsError, ValueError) as err:
        p.error(str(err))
    for name, content in files.items():
        path = args.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        elif name.endswith(".json"):
            path.write_text(json.dumps(content, indent=2) + "\n")
        else:
            path.write_text(to_yaml(content))
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
