"""Callbacks: recorders, stopping rules, evaluators and the relearning probe."""

from lightning_unlearn.callbacks.evaluator import UnlearningEvaluator
from lightning_unlearn.callbacks.prototype_recorder import PrototypeRecorder, PrototypeRecording
from lightning_unlearn.callbacks.relearning_probe import RelearningProbe
from lightning_unlearn.callbacks.stopping import ForgetAccuracyStop, ReferenceAccuracyStop, UnlearningStopReason

__all__: list[str] = [
    "ForgetAccuracyStop",
    "PrototypeRecorder",
    "PrototypeRecording",
    "ReferenceAccuracyStop",
    "RelearningProbe",
    "UnlearningEvaluator",
    "UnlearningStopReason",
]
