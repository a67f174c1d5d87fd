"""The subcommands of ``lightning-unlearn``: what each does (its ``--help`` line) and the Trainer
settings of the package's own subcommands."""

from __future__ import annotations

from typing import Any

DESCRIPTION = (
    "Machine unlearning for PyTorch Lightning classifiers: train the original model (fit), serve a deletion request"
    " with a registered method (unlearn), score the unlearned model (evaluate), compare every method (benchmark)."
)
LIGHTNING_SUBCOMMANDS: dict[str, str] = {
    "fit": "Train the original classifier (a Classifier on an UnlearningDataModule) with the Lightning Trainer.",
    "validate": "Run one validation epoch of a classifier with the Lightning Trainer.",
    "test": "Score a classifier on the data module's test split with the Lightning Trainer.",
}
CUSTOM_SUBCOMMANDS: dict[str, str] = {
    "unlearn": "Serve a deletion request: unlearn a trained classifier with a registered method.",
    "evaluate": "Evaluate an unlearned model against the original and the retrained reference.",
    "benchmark": "Run every registered method against Retrain and write a report folder (make demo).",
    "audit": "Per-example evidence of forgetting from a bank of models: U-LiRA, the NeurIPS 2023 score, KLOM.",
}
UNLEARN_TRAINER_DEFAULTS: dict[str, Any] = {"logger": False, "enable_checkpointing": False, "max_epochs": None,
                                             "enable_model_summary": False}
EVALUATE_TRAINER_ARGS: tuple[str, ...] = ("accelerator", "devices", "precision")
EVALUATE_TRAINER_DEFAULTS: dict[str, Any] = {"devices": 1}
EVALUATE_TRAINER_FIXED: dict[str, Any] = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                                          "enable_model_summary": False}
