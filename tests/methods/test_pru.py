"""PRU on MNIST-5k / LeNet-5: cluster losses, real freezing in both phases, forgetting, the relearning test."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback, seed_everything

from lightning_unlearn import Classifier, create_method, make_trainer, unlearn
from lightning_unlearn.benchmark import check_interval
from lightning_unlearn.callbacks import ForgetAccuracyStop
from lightning_unlearn.methods.pru import PRU, cluster_losses
from lightning_unlearn.models.anatomy import HeadNotFoundError
from lightning_unlearn.relearning import relearn
from quality import SEEDS, class_forgetting, mean, per_seed, quality


def test_cluster_losses() -> None:
    e = torch.tensor([[0.0, 0.0], [0.0, 2.0], [3.0, 0.0], [3.0, 2.0]], requires_grad=True)
    l_s, l_o = cluster_losses(e, torch.tensor([0, 0, 1, 1]))
    assert l_s.item() == pytest.approx(2.0) and l_o.item() == pytest.approx(1 / 3)
    # One pseudo class: no L_o at all (not a constant); all pseudo classes distinct: no L_s.
    assert cluster_losses(e, torch.tensor([4, 4, 4, 4]))[1] is None
    assert cluster_losses(e, torch.tensor([0, 1, 2, 3]))[0] is None
    # Identical embeddings (zero distances) keep finite gradients.
    same = torch.zeros(4, 3, requires_grad=True)
    l_s, l_o = cluster_losses(same, torch.tensor([0, 0, 1, 1]))
    (l_s + l_o).backward()
    assert torch.isfinite(same.grad).all()


class _PhaseSnapshots(Callback):
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        pl_module._snap_start = [p.detach().clone() for p in pl_module.model.parameters()]


def _split(method, params):
    head = {id(p) for p in method.anatomy.head_parameters()}
    named = list(zip(method.model.parameters(), params))
    return [q for p, q in named if id(p) in head], [q for p, q in named if id(p) not in head]


def test_pru_freezes_each_part_and_forgets_a_class(mnist_dm, original_lenet) -> None:
    dm = mnist_dm("class")
    method = PRU(original_lenet, target=None, guard=None)  # the fixed budget: one pair of phases per epoch
    checks: list[bool] = []
    phase = method.classifier_phase

    def checked_phase():
        after_e = [p.detach().clone() for p in method.model.parameters()]
        loss = phase()
        after_c = [p.detach().clone() for p in method.model.parameters()]
        head0, body0 = _split(method, method._snap_start)
        head1, body1 = _split(method, after_e)
        head2, body2 = _split(method, after_c)
        checks.append(all(torch.equal(a, b) for a, b in zip(head0, head1)))  # C frozen in the extractor phase
        checks.append(all(torch.equal(a, b) for a, b in zip(body1, body2)))  # E frozen in the classifier phase
        checks.append(not all(torch.equal(a, b) for a, b in zip(body0, body1)))  # ... and each phase did move its part
        checks.append(not all(torch.equal(a, b) for a, b in zip(head1, head2)))
        return loss

    method.classifier_phase = checked_phase
    pru_model = unlearn(original_lenet, dm, method=method, callbacks=[_PhaseSnapshots()])
    assert len(checks) == 4 * method.hparams.max_epochs and all(checks), checks
    assert all(p.requires_grad for p in pru_model.parameters())



@quality
def test_pru_forgets_a_class(quality_run) -> None:
    forget, drop = class_forgetting(quality_run, "PRU")
    # Measured: D_tf 0.00 in every seed; D_tr drop -0.006-0.019 (mean 0.008, spread 0.025).
    assert mean(forget) <= 0.02 and mean(drop) <= 0.05, (forget, drop)


@pytest.fixture(scope="module")
def sgd_lenet(mnist_dm):
    """Factory ``seed``: the PRU paper's original-model recipe (§5.1): SGD, momentum 0.9, lr 0.01, batch 64, 10 epochs."""
    cache = {}

    def get(seed: int) -> Classifier:
        if seed not in cache:
            seed_everything(seed, verbose=False)
            model = Classifier("lenet5", optimizer="sgd", lr=0.01, momentum=0.9)
            make_trainer(10, limit_val_batches=0).fit(model, datamodule=mnist_dm("class", seed))
            cache[seed] = model.eval()
        return cache[seed]

    return get


@quality
def test_pru_relearns_less_than_random_label(mnist_dm, sgd_lenet) -> None:
    """The relearning test (002, §5.3) with the paper's protocol.

    Each method stops as soon as its forget accuracy touches 1% (§5.1: "touching the forgetting
    accuracy of less than 0.01"); the probe then fine-tunes on D_new restricted to the retained
    classes (SGD lr 1e-3, momentum 0.9) for 5 epochs. PRU's D_tf accuracy must stay below the
    boundary-shifting baseline's after every relearning epoch.
    """
    curves: dict[tuple[str, int], list[float]] = {}
    for seed in SEEDS:
        dm, original = mnist_dm("class", seed), sgd_lenet(seed)
        for name in ("PRU", "RandomLabel"):
            method = create_method(name, original, seed=seed, target=None, guard=None)  # the paper's rule alone stops it
            model = unlearn(original, dm, method=method, callbacks=[ForgetAccuracyStop(target=0.01, verbose=False)],
                            trainer_kwargs=check_interval(method, dm, 16))
            curves[name, seed] = relearn(model, dm, epochs=5, seed=seed).forget_accuracy
    print("relearning curves (D_tf accuracy, epochs 0-5):", curves)
    worst = per_seed("PRU/max_relearned", lambda s: max(curves["PRU", s]))
    # Paired over seeds and probe epochs 1-5: PRU's D_tf accuracy below RandomLabel's on average.
    diff = per_seed("RandomLabel-PRU/mean_over_epochs",
                    lambda s: mean(r - p for p, r in zip(curves["PRU", s][1:], curves["RandomLabel", s][1:])))
    # Measured (2 thread counts): max D_tf after relearning 0.08-0.14, 0.45, 0.13 (mean 0.22-0.24, spread 0.37);
    # RandomLabel - PRU 0.23, 0.41, 0.10 (mean 0.25, spread 0.31): the sign holds in every seed, the size varies.
    assert mean(worst) <= 0.65, worst
    assert min(diff) > 0.0, diff


def test_bad_input(original_lenet) -> None:
    with pytest.raises(ValueError, match="`head_lr` must be a finite number > 0, got 0"):
        PRU(original_lenet, head_lr=0)
    with pytest.raises(ValueError, match="`weight_o` must be a finite number >= 0, got -1"):
        PRU(original_lenet, weight_o=-1)
    with pytest.raises(ValueError, match="`centroid_eps` must be a finite number > 0, got 0"):
        PRU(original_lenet, centroid_eps=0)

    class Tied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10), torch.nn.Linear(10, 10))
            self.fc = torch.nn.Linear(10, 10)
            self.body[2].weight = self.fc.weight

        def forward(self, x):
            return self.fc(self.body(x))

    with pytest.raises(HeadNotFoundError, match="weight tying"):
        PRU(Tied())
