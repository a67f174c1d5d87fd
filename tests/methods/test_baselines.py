"""Comparison baselines: NegGrad+, Random Label, Boundary Shrink/Expanding, SCRUB, SalUn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_unlearn import make_trainer
from lightning_unlearn.data.seeding import index_random_other_label
from lightning_unlearn.methods import SCRUB, BoundaryExpanding, BoundaryShrink, NegGradPlus, RandomLabel, SalUn
from lightning_unlearn.methods.boundary_shrink import neighbour_labels
from lightning_unlearn.methods.salun import saliency_mask
from lightning_unlearn.methods.scrub import scrub_schedule
from lightning_unlearn.models import LeNet5
from quality import SEEDS, mean, per_seed, quality

BASELINES = ["NegGradPlus", "RandomLabel", "BoundaryShrink", "BoundaryExpanding", "SCRUB", "SalUn"]


# Highest mean forget accuracy (over SEEDS) accepted after class-wise unlearning with DEFAULT arguments,
# and the smallest mean drop from the original's. Measured per seed (spread = max - min over seeds):
#   BoundaryExpanding/BoundaryShrink/SalUn forget 0.00 (spread 0), RandomLabel 0.00-0.02 (0.02);
#   NegGradPlus 0.00, 0.46, 0.00 (spread 0.46: one seed in three keeps half the class — its defaults
#   do not serve every class-wise request); SCRUB 0.86-0.94 (spread 0.08), drop 0.05-0.14 (0.09): it
#   only partly forgets a whole class (as in the UGradSL paper's Table 1: UA 30% on CIFAR-100).
#   Retained accuracy: SalUn 0.83-0.85 (the lowest; spread 0.02), the others >= 0.94.
#   Over 4 CPU configurations NegGradPlus reached 0.54 on one seed and SCRUB's drop 0.035-0.173: SCRUB is
#   only asserted to lower the forget accuracy in every seed.
MAX_FORGET_ACC = {"NegGradPlus": 0.75, "SCRUB": 1.0}
MIN_DROP = {"SCRUB": 0.0}


@quality
@pytest.mark.parametrize("name", BASELINES)
def test_baseline_unlearns_with_defaults(quality_run, name):
    runs = [quality_run(name, "class", s) for s in SEEDS]
    forget = per_seed("forget", lambda s: runs[s]["forget"])
    drop = per_seed("forget_drop", lambda s: runs[s]["original/forget"] - runs[s]["forget"])
    retain = per_seed("retain", lambda s: runs[s]["retain"])
    assert mean(forget) < MAX_FORGET_ACC.get(name, 0.3), forget
    if name == "SCRUB":
        assert min(drop) > MIN_DROP[name], drop
    else:
        assert mean(drop) > MIN_DROP.get(name, 0.3), drop
    assert mean(retain) > 0.75, retain


def test_salun_mask_holds_exactly_under_momentum_and_weight_decay(mnist_dm, original_lenet):
    dm = mnist_dm("random")
    for optimizer in ("sgd", "adamw"):
        method = SalUn(original_lenet, optimizer=optimizer, lr=1e-2, weight_decay=0.1, momentum=0.9, max_epochs=1, threshold=0.3,
                       target=None, guard=None)  # one fixed epoch: the guard must not restore the start
        start = [p.detach().clone() for p in method.trainable_parameters()]
        make_trainer(1, limit_val_batches=0).fit(method, datamodule=dm)
        masks = method.masks
        n_salient = sum(int(m.sum()) for m in masks)
        assert n_salient == round(0.3 * sum(m.numel() for m in masks))
        changed = 0
        for p, p0, m in zip(method.trainable_parameters(), start, masks):
            assert torch.equal(p.detach()[~m], p0[~m]), f"{optimizer}: a masked weight moved"
            changed += int((p.detach()[m] != p0[m]).sum())
        assert changed > 0.9 * n_salient


def test_saliency_mask_selects_the_largest_gradients():
    masks = saliency_mask([torch.tensor([[0.5, -4.0]]), torch.tensor([3.0, 0.1, -0.2])], 0.4)
    assert [m.tolist() for m in masks] == [[[False, True]], [True, False, False]]


def test_scrub_phases_follow_the_schedule(mnist_dm, original_lenet):
    assert scrub_schedule(6, 2) == ["max", "min", "max", "min", "min", "min"]
    assert scrub_schedule(3, 0) == ["min", "min", "min"]
    dm = mnist_dm("random")
    method = SCRUB(original_lenet, msteps=2, max_epochs=5, lr=1e-3, target=None, guard=None)  # the schedule alone ends it
    make_trainer(10, limit_val_batches=0).fit(method, datamodule=dm)
    n_forget = int(np.ceil(len(dm.indices["forget"]) / dm.batch_size))
    n_retain = int(np.ceil(len(dm.indices["retain"]) / dm.batch_size))
    expected = [("max", n_forget), ("min", n_retain), ("max", n_forget), ("min", n_retain), ("min", n_retain)]
    assert method.phase_log == expected
    assert method.trainer.current_epoch == 5  # the schedule's length, not the Trainer's max_epochs
    assert all(not p.requires_grad for p in method.teacher.parameters())
    assert all(torch.equal(v, original_lenet.state_dict()[k]) for k, v in method.teacher.state_dict().items())


def test_boundary_expanding_prunes_the_shadow_unit(mnist_dm, original_lenet):
    dm = mnist_dm("class")
    method = BoundaryExpanding(original_lenet, max_epochs=1, target=None, guard=None)  # one fixed epoch, no request
    make_trainer(1, limit_val_batches=0).fit(method, datamodule=dm)
    shadow_before = BoundaryExpanding(original_lenet).shadow_weight
    assert not torch.equal(method.shadow_weight.detach(), shadow_before.detach())  # the shadow unit was trained
    model = method.unlearned_model
    assert type(model) is type(original_lenet)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in original_lenet.state_dict().items()}
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)  # forgetting: test_baseline_unlearns_with_defaults


def test_boundary_shrink_labels_are_wrong_neighbours(mnist_dm, original_lenet):
    dm = mnist_dm("subclass")
    x, y, _ = next(iter(dm.dataloader("forget")))
    labels = neighbour_labels(original_lenet.model.eval(), x, y, 0.3)
    assert (labels != y).all() and labels.min() >= 0 and labels.max() < 10
    method = BoundaryShrink(original_lenet, max_epochs=1, target=None, guard=None)  # one fixed epoch, no request
    make_trainer(1, limit_val_batches=0).fit(method, datamodule=dm)
    table = method.neighbour_table
    assert (table[torch.as_tensor(dm.indices["forget"])] >= 0).all()
    assert int((table >= 0).sum()) == len(dm.indices["forget"])


def test_random_labels_are_keyed_by_index():
    method = RandomLabel(LeNet5(), seed=3)
    index, y = torch.arange(200), torch.randint(0, 10, (200,))
    labels = method.random_labels(index, y)
    assert (labels != y).all()
    perm = torch.randperm(200)
    assert torch.equal(method.random_labels(index[perm], y[perm]), labels[perm])
    assert torch.equal(labels, index_random_other_label(index, y, 10, 3, 0x52AB))


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (NegGradPlus, {"retain_weight": 1.2}, r"`retain_weight` must be in \[0, 1\], got 1.2"),
        (BoundaryShrink, {"epsilon": 0.0}, r"`epsilon` must be a finite number > 0 \(FGSM step in input units\), got 0.0"),
        (SCRUB, {"msteps": -1}, r"`msteps` must be an integer >= 0, got -1"),
        (SCRUB, {"temperature": 0.0}, r"`temperature` must be a finite number > 0, got 0.0"),
        (SCRUB, {"kd_weight": -1.0}, r"`kd_weight` must be a finite number >= 0, got -1.0"),
        (SalUn, {"threshold": 0.0}, r"`threshold` must be a finite number in \(0, 1\] \(fraction of salient weights\), got 0.0"),
    ],
)
def test_bad_arguments(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(LeNet5(), **kwargs)


def test_retain_methods_refuse_an_empty_retain_set(mnist_dm):
    dm = mnist_dm("class")
    saved = dm.indices["retain"]
    dm.indices["retain"] = np.empty(0, dtype=np.int64)
    try:
        for cls in (NegGradPlus, SCRUB, SalUn):
            with pytest.raises(ValueError, match=rf"{cls.__name__} needs a non-empty retain set.*Retain-free methods: BoundaryExpanding, BoundaryShrink"):
                cls(LeNet5()).check_data(dm)
    finally:
        dm.indices["retain"] = saved
