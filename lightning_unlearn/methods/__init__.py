"""Unlearning methods (one file per method) and their registry."""

from lightning_unlearn.methods.base import NonFiniteLossError, UnlearningMethod, load_model_weights
from lightning_unlearn.methods.fine_tune import FineTune
from lightning_unlearn.methods.gradient_ascent import GradientAscent
from lightning_unlearn.methods.registry import METHODS, available_methods, get_method, register_method
from lightning_unlearn.methods.retrain import Retrain

__all__ = [
    "METHODS",
    "FineTune",
    "GradientAscent",
    "NonFiniteLossError",
    "Retrain",
    "UnlearningMethod",
    "available_methods",
    "get_method",
    "load_model_weights",
    "register_method",
]
