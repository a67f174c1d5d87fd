"""Unlearning methods (one file per method) and their registry."""

from lightning_unlearn.methods.base import NonFiniteLossError, UnlearningMethod, load_model_weights
from lightning_unlearn.methods.boundary_expanding import BoundaryExpanding
from lightning_unlearn.methods.boundary_shrink import BoundaryShrink
from lightning_unlearn.methods.delta_targeted import DeltaTargeted
from lightning_unlearn.methods.fine_tune import FineTune
from lightning_unlearn.methods.gradient_ascent import GradientAscent
from lightning_unlearn.methods.label_smoothing import adaptive_smoothing_rate, gls_cross_entropy
from lightning_unlearn.methods.naive_ps import NaivePS
from lightning_unlearn.methods.neg_grad_plus import NegGradPlus
from lightning_unlearn.methods.ps import PS
from lightning_unlearn.methods.pru import PRU
from lightning_unlearn.methods.random_label import RandomLabel
from lightning_unlearn.methods.registry import METHODS, available_methods, get_method, register_method
from lightning_unlearn.methods.retrain import Retrain
from lightning_unlearn.methods.salun import SalUn
from lightning_unlearn.methods.scrub import SCRUB
from lightning_unlearn.methods.su import SU
from lightning_unlearn.methods.suli import SULI
from lightning_unlearn.methods.ugradsl import UGradSL, UGradSLPlus

__all__ = [
    "METHODS",
    "SCRUB",
    "BoundaryExpanding",
    "BoundaryShrink",
    "DeltaTargeted",
    "FineTune",
    "GradientAscent",
    "NaivePS",
    "NegGradPlus",
    "NonFiniteLossError",
    "PRU",
    "PS",
    "RandomLabel",
    "Retrain",
    "SU",
    "SULI",
    "SalUn",
    "UGradSL",
    "UGradSLPlus",
    "UnlearningMethod",
    "adaptive_smoothing_rate",
    "available_methods",
    "get_method",
    "gls_cross_entropy",
    "load_model_weights",
    "register_method",
]
