"""Run a request on 1 or N gloo processes and write its outcome: are the request's decisions layout-free?

The "method" changes the model by a fixed amount per step, whatever data it sees (it lowers the
forget class's head bias; ``--request instance`` forgets the 100 samples of that class the model is most confident on, an instance-wise request
judged by the membership AUC of D_f's losses, and a negative ``--shift`` raises the bias, so every check
sees another AUC), so 1 and N processes pass through identical states at identical steps;
the checks (DDP-exact counts), the cadence, the target, the guard and the returned state must then
be identical too, and so must the accuracies the method logs when the returned state is validated. Used by ``tests/test_distributed.py`` as a subprocess (never DDP inside pytest).

    python tests/scripts/request_decisions.py CHECKPOINT OUTPUT.json --devices 2
"""

from __future__ import annotations

import argparse
import json
import warnings
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Trainer

from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.data.forget import ClassForget, ForgetSpec
from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.models.classifier import Classifier
from lightning_unlearn.serialization import load_trusted

FORGET_CLASS = 3
VAL_SPLITS = ("forget", "retain", "test_retain", "ref")
INSTANCE_VAL_SPLITS = ("forget", "retain", "test", "ref")


class LowerForgetBias(UnlearningMethod):
    """Each step lowers the forget class's head bias by ``shift``: a data-independent trajectory."""

    data_need = "forget"

    def __init__(self, model: Any = None, *, shift: float = 0.4, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.shift = shift

    def unlearning_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, _ = batch[0], batch[1]
        return self.model(x).sum() * 0.0  # a graph for DDP's gradient sync; the update is below

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        with torch.no_grad():
            self.anatomy.head.bias[FORGET_CLASS] -= self.shift


class MostConfident(ForgetSpec):
    """An instance-wise request: the ``count`` training samples of ``class_id`` the model is most confident on
    (lowest loss), so D_f's losses start below those of held-out samples of the class (membership AUC > 0.5)."""

    def __init__(self, class_id: int, count: int, model: torch.nn.Module) -> None:
        self.class_id, self.count, self.model = class_id, count, model

    def _choose(self, candidates: np.ndarray, labels: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
        pool = candidates[labels == self.class_id]
        data = UnlearningDataModule("mnist5k", forget=ClassForget(self.class_id)).data.train
        x = torch.stack([torch.as_tensor(data[int(i)][0]) for i in pool])
        with torch.no_grad():
            self.model.eval()
            losses = torch.nn.functional.cross_entropy(self.model(x), torch.full((len(pool),), self.class_id), reduction="none")
        return pool[np.argsort(losses.numpy(), kind="stable")[: self.count]]

    def _params(self) -> dict[str, Any]:
        return {"class_id": self.class_id, "count": self.count}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("output")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--request", choices=("class", "instance"), default="class")
    parser.add_argument("--shift", type=float, default=0.4)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    state = load_trusted(args.checkpoint, "checkpoint")
    classifier = Classifier(**state["hyper_parameters"])
    classifier.load_state_dict(state["state_dict"])
    forget = ClassForget(FORGET_CLASS) if args.request == "class" else MostConfident(FORGET_CLASS, 100, classifier)
    dm = UnlearningDataModule("mnist5k", forget=forget, new_fraction=0.1, ref_fraction=0.1, batch_size=args.batch_size)
    method = LowerForgetBias(classifier, shift=args.shift, optimizer="sgd", lr=1e-3, weight_decay=0.0, seed=0, max_steps=60, check_every=3,
                             val_splits=VAL_SPLITS if args.request == "class" else INSTANCE_VAL_SPLITS)
    trainer = Trainer(accelerator="cpu", devices=args.devices, strategy="ddp" if args.devices > 1 else "auto", max_epochs=-1,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(method, datamodule=dm)
    # The returned state validated as Lightning does it (DistributedSampler pads uneven shards with repeats).
    logged = {k: float(v) for d in trainer.validate(method, datamodule=dm, verbose=False) for k, v in d.items()}
    if trainer.global_rank == 0:
        outcome = method.outcome.to_dict()
        outcome["bias"] = float(method.anatomy.head.bias[FORGET_CLASS])
        outcome["validation"] = logged
        outcome["split_sizes"] = {s: len(dm.split_dataset(s)) for s in method.hparams.val_splits}
        for key in ("runtime_s", "check_time_s"):
            outcome.pop(key)
        with open(args.output, "w") as f:
            json.dump(outcome, f)
    if torch.distributed.is_initialized():  # end together: a process leaving while its peer still works can abort in gloo's teardown
        trainer.strategy.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
