"""δ-Targeted^λ on MNIST-5k / LeNet-5: pseudo labels, class-wise forgetting, λ on 512 random samples, stop rule, bad input."""

from __future__ import annotations

import pytest
import torch

from lightning_unlearn import unlearn
from lightning_unlearn.methods.delta_targeted import DeltaTargeted
from lightning_unlearn.methods.soft_targets import delta_targeted_labels
from quality import class_forgetting, mean, per_seed, quality


def test_pseudo_labels_follow_algorithm_1_and_are_keyed_by_index() -> None:
    logits = torch.tensor([[3.0, 2.0, 0.0], [0.0, 3.0, 2.0], [1.0, 0.0, 5.0]])
    labels, idx = torch.tensor([0, 2, 2]), torch.tensor([10, 11, 12])
    # delta = 0: correct -> second most confident; wrong -> the prediction.
    assert delta_targeted_labels(logits, labels, idx, 0.0, seed=0).tolist() == [1, 1, 0]
    assert delta_targeted_labels(logits, labels, idx, 1.0, seed=0).tolist() == labels.tolist()
    big = torch.randn(4000, 10, generator=torch.Generator().manual_seed(0))
    y = big.argmax(dim=1)
    ids = torch.arange(4000) * 7 + 3
    drawn = delta_targeted_labels(big, y, ids, 0.3, seed=1)
    assert abs((drawn == y).double().mean().item() - 0.3) < 0.03
    perm = torch.randperm(4000, generator=torch.Generator().manual_seed(2))
    assert torch.equal(delta_targeted_labels(big[perm], y[perm], ids[perm], 0.3, seed=1), drawn[perm])


@quality
def test_forgets_a_class_with_paper_defaults(quality_run) -> None:
    forget, drop = class_forgetting(quality_run, "DeltaTargeted")
    # Measured: D_tf 0.00-0.01 (mean 0.003, spread 0.01); D_tr drop -0.002-0.021 (mean 0.013, spread 0.023).
    assert mean(forget) <= 0.02 and mean(drop) <= 0.05, (forget, drop)


@quality
def test_lambda_3_keeps_retain_accuracy_on_512_random_samples(quality_run) -> None:
    diff = per_seed("retain/lam3-lam1", lambda s: quality_run("DeltaTargeted", "random512", s, lam=3.0)["retain"]
                    - quality_run("DeltaTargeted", "random512", s, lam=1.0)["retain"])
    assert mean(diff) >= 0.1, diff  # measured per seed 0.25-0.29 (mean 0.26, spread 0.04)


def test_loss_threshold_stops_and_is_checkpointed(mnist_dm, original_lenet) -> None:
    method = DeltaTargeted(original_lenet, loss_threshold=50.0, max_epochs=5, target=None, guard=None)  # its own stop alone
    unlearn(original_lenet, mnist_dm("random128"), method=method)
    assert method.stopped_by_loss and method.current_epoch == 1 and method.last_epoch_loss < 50.0
    checkpoint: dict = {}
    method.on_save_checkpoint(checkpoint)
    restored = DeltaTargeted(original_lenet)
    restored.on_load_checkpoint(checkpoint)
    assert restored.stopped_by_loss and restored.last_epoch_loss == method.last_epoch_loss
    assert torch.equal(restored.targets.values, method.targets.values.cpu())


def test_bad_input(original_lenet) -> None:
    with pytest.raises(ValueError, match=r"`delta` .* must be in \[0, 1\], got 1.5"):
        DeltaTargeted(original_lenet, delta=1.5)
    with pytest.raises(ValueError, match=r"`lam` .* must be a finite number > 0, got 0"):
        DeltaTargeted(original_lenet, lam=0)
    with pytest.raises(ValueError, match=r"`loss_threshold` .* must be a finite number >= 0, got -1"):
        DeltaTargeted(original_lenet, loss_threshold=-1)
    with pytest.raises(ValueError, match=r"`loss_threshold` .* must be a finite number >= 0, got nan"):
        DeltaTargeted(original_lenet, loss_threshold=float("nan"))
