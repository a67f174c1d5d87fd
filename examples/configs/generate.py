"""Write one YAML per registered method (``examples/configs/<name>.yaml``) from the method's signature.

Run it again after adding a method: ``python examples/configs/generate.py`` (existing files
are rewritten). Each file holds the method's own arguments at their defaults, the original
checkpoint written by ``fit.yaml`` and the shared data file, so that::

    lightning-unlearn fit --config examples/configs/fit.yaml
    lightning-unlearn unlearn --config examples/configs/<name>.yaml --output runs/<name>

serves the deletion request of ``data.yaml`` with that method.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import yaml

import lightning_unlearn.methods as methods_pkg
from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.methods.registry import METHODS, available_methods, get_method

HERE = Path(__file__).resolve().parent
SKIP = {"self", "model", "checkpoint", "num_classes", "head", "val_splits"}
NEEDS = {"forget": "the forget set only", "retain": "the retain set", "both": "the forget and the retain set"}


def config_name(method: str) -> str:
    """File stem of a method's YAML: its registry key (lower case, no separators)."""
    return next(key for key, cls in METHODS.items() if cls is get_method(method))


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def method_config(method: str) -> str:
    cls = get_method(method)
    public = f"lightning_unlearn.methods.{cls.__name__}" if getattr(methods_pkg, cls.__name__, None) is cls else f"{cls.__module__}.{cls.__name__}"
    init_args: dict[str, Any] = {"checkpoint": "runs/original.ckpt"}
    # The method's own arguments, then the base arguments it passes on through ``**kwargs``
    # (optimiser, seed, and the request: target, guard, step budget), at their defaults.
    own = dict(inspect.signature(cls.__init__).parameters)
    base = {k: v for k, v in inspect.signature(UnlearningMethod.__init__).parameters.items() if k not in own}
    for name, param in {**own, **base}.items():
        if name in SKIP or param.default is inspect.Parameter.empty or not _plain(param.default):
            continue
        init_args[name] = list(param.default) if isinstance(param.default, tuple) else param.default
    if "recording" in init_args:  # Naive PS: the recording travels in the checkpoint of the recorded fit
        init_args["recording"] = "runs/original.ckpt"
    summary = (inspect.getdoc(cls) or method).splitlines()[0]
    summary = summary.split(": ", 1)[1] if summary.startswith(f"{cls.method_name}: ") else summary
    header = [
        f"# {cls.method_name}: {summary}",
        f"# Paper: {cls.paper}" if cls.paper else "",
        f"# Needs {NEEDS.get(cls.data_need, cls.data_need)}. Values below are the method's defaults.",
        f"#   lightning-unlearn unlearn --config examples/configs/{config_name(method)}.yaml --output runs/{config_name(method)}",
    ]
    body = {
        "seed_everything": 0,
        "method": {"class_path": public, "init_args": init_args},
        "data": "data.yaml",
        "trainer": {"enable_progress_bar": False},
    }
    return "\n".join(h for h in header if h) + "\n" + yaml.safe_dump(body, sort_keys=False)


def main(argv: list[str]) -> None:
    targets = argv or available_methods()
    for method in targets:
        path = HERE / f"{config_name(method)}.yaml"
        path.write_text(method_config(method))
        print(f"wrote {path.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main(sys.argv[1:])
