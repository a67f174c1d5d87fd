"""Serve a deletion request on several processes with DDP (one Trainer, any registered method).

Lightning launches the processes itself, or picks them up from torchrun / SLURM::

    # 2 CPU processes (gloo), e.g. on a laptop
    python examples/ddp_unlearn.py --checkpoint runs/original.ckpt --accelerator cpu --devices 2
    # 4 GPUs (NCCL), bf16 mixed precision
    python examples/ddp_unlearn.py --checkpoint runs/original.ckpt --accelerator cuda --devices 4 --precision bf16-mixed
    # the same under torchrun (Lightning detects the launcher's environment)
    torchrun --nproc_per_node 4 examples/ddp_unlearn.py --checkpoint runs/original.ckpt --accelerator cuda --devices 4
    # 2 nodes × 4 GPUs under SLURM (sbatch --nodes 2 --ntasks-per-node 4 --gpus-per-node 4)
    srun python examples/ddp_unlearn.py --checkpoint runs/original.ckpt --accelerator cuda --devices 4 --num_nodes 2

``--checkpoint`` is a Classifier checkpoint, e.g. from ``lightning-unlearn fit --config
examples/configs/fit.yaml``. Rank 0 writes the unlearned model and a JSON summary (accuracy
per split, runtime, the request's outcome, and the method's per-sample targets when it has any) to
``--output``. By default the method serves the request (its target, within the utility guard and a
step budget); ``--no_request`` runs its fixed epoch budget instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from pathlib import Path

import torch
from lightning.pytorch import Trainer, seed_everything

from lightning_unlearn import ClassForget, RandomForget, SubclassForget, UnlearningDataModule, create_method, split_accuracies
from lightning_unlearn.data.forget import ForgetSpec


def forget_spec(scenario: str, forget_class: int) -> ForgetSpec:
    return {"class": ClassForget(forget_class), "subclass": SubclassForget(forget_class, 0.1), "random": RandomForget(fraction=0.1)}[scenario]


def _import(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--checkpoint", required=True, help="Classifier checkpoint of the original model")
    cli.add_argument("--method", default="SU", help="a registered method name or a class path (my_package.MyMethod)")
    cli.add_argument("--dataset", default="mnist5k")
    cli.add_argument("--scenario", default="class", choices=["class", "subclass", "random"])
    cli.add_argument("--forget_class", type=int, default=3)
    cli.add_argument("--accelerator", default="auto")
    cli.add_argument("--devices", type=int, default=2)
    cli.add_argument("--num_nodes", type=int, default=1)
    cli.add_argument("--strategy", default="ddp")
    cli.add_argument("--precision", default="32-true")
    cli.add_argument("--batch_size", type=int, default=64, help="per-process batch (effective batch = devices × this)")
    cli.add_argument("--max_epochs", type=int, default=None, help="override the method's epoch budget")
    cli.add_argument("--no_request", action="store_true", help="no target and no guard: run the fixed epoch budget")
    cli.add_argument("--output", default="runs/ddp")
    args = cli.parse_args()

    seed_everything(0, workers=True, verbose=False)
    dm = UnlearningDataModule(args.dataset, forget=forget_spec(args.scenario, args.forget_class), seed=0,
                              new_fraction=0.1, ref_fraction=0.05, batch_size=args.batch_size)
    options = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
    if args.no_request:
        options.update(target=None, guard=None)
    method_cls = _import(args.method) if "." in args.method else args.method
    method = create_method(method_cls, model=None, checkpoint=args.checkpoint, **options)  # architecture from the checkpoint
    trainer = Trainer(
        accelerator=args.accelerator, devices=args.devices, num_nodes=args.num_nodes, strategy=args.strategy,
        # Under a request its step budget ends the run (as in `unlearn()`); otherwise the method's epochs.
        precision=args.precision, max_epochs=-1 if method.runs_to_budget() else max(method.hparams.max_epochs, 1), logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(method, datamodule=dm)
    if not trainer.is_global_zero:
        return
    out = Path(args.output)
    method.save_unlearned(out / "model.pt", datamodule=dm)  # and the deletion audit record, audit.json
    unlearned = method.unlearned_model.float().eval()
    summary = {
        "method": method.method_name,
        "world_size": trainer.world_size,
        "precision": args.precision,
        "runtime_s": method.runtime_s,
        "accuracy": split_accuracies(unlearned, dm),
        "outcome": method.outcome.to_dict() if method.outcome is not None else None,
    }
    targets = getattr(method, "targets", None)
    if targets is not None and hasattr(targets, "state_dict"):  # per-sample targets keyed by dataset index
        state = targets.state_dict()
        summary["targets"] = {"keys": state["keys"].tolist(), "values": state["values"].float().tolist()}
    tmp = out / f".summary.{os.getpid()}.json"
    tmp.write_text(json.dumps(summary))
    os.replace(tmp, out / "summary.json")
    print(json.dumps({k: v for k, v in summary.items() if k != "targets"}, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    main()
