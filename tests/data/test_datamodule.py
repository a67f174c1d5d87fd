"""UnlearningDataModule: every scenario's splits, manifests, loaders and bundled data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lightning_unlearn.data import (
    ClassForget,
    IndexForget,
    RandomForget,
    SubclassForget,
    UnlearningDataModule,
    index_randint,
    index_random_other_label,
    index_uniform,
    load_dataset,
)



def make(spec, **kwargs):
    dm = UnlearningDataModule("digits", forget=spec, seed=1, new_fraction=0.1, ref_fraction=0.1, **kwargs)
    dm.setup()
    return dm


TRAIN_INDICES = make(ClassForget(0)).indices["train"]
SPECS = [
    ClassForget(3),
    SubclassForget(3, 0.1),
    RandomForget(fraction=0.1),
    RandomForget(count=50),
    IndexForget(TRAIN_INDICES[[0, 10, -1]].tolist()),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: type(s).__name__)
def test_splits_partition_the_training_data(spec):
    dm = make(spec)
    f, r, train = dm.indices["forget"], dm.indices["retain"], dm.indices["train"]
    new, ref = dm.indices["new"], dm.indices["ref"]
    assert np.intersect1d(f, r).size == 0
    assert np.array_equal(np.union1d(f, r), train)
    assert np.intersect1d(train, np.union1d(new, ref)).size == 0 and np.intersect1d(new, ref).size == 0
    assert train.size + new.size + ref.size == len(dm.data.train)
    if isinstance(spec, IndexForget):
        assert f.tolist() == sorted(spec.indices)
    assert new.size == round(0.1 * len(dm.data.train))


def test_scenario_sizes_and_test_splits():
    dm = make(ClassForget(3))
    targets = dm.data.train_targets
    assert set(targets[dm.forget_indices]) == {3}
    assert (targets[dm.retain_indices] != 3).all()
    assert (targets[dm.indices["train"]] == 3).sum() == dm.forget_indices.size
    assert set(dm.split_targets("test_forget")) == {3} and 3 not in set(dm.split_targets("test_retain"))
    sub = make(SubclassForget(3, 0.1))
    n3 = (targets[sub.indices["train"]] == 3).sum()
    assert sub.forget_indices.size == round(0.1 * n3)
    with pytest.raises(ValueError, match="exists only for class-wise forgetting"):
        sub.dataloader("test_forget")


@pytest.mark.parametrize("spec", SPECS[1:4], ids=lambda s: repr(s))
def test_deterministic_under_a_seed(spec):
    a, b = make(spec), make(spec)
    for key in a.indices:
        assert np.array_equal(a.indices[key], b.indices[key])
    c = UnlearningDataModule("digits", forget=spec, seed=2, new_fraction=0.1, ref_fraction=0.1)
    c.setup()
    assert not np.array_equal(a.indices["forget"], c.indices["forget"])


def test_manifest_round_trip(tmp_path):
    dm = make(RandomForget(count=40))
    path = dm.save_manifest(tmp_path / "run" / "manifest.json")
    assert json.loads(path.read_text())["forget_spec"] == {"type": "RandomForget", "count": 40, "fraction": None}
    # A data module built with another seed and spec reads the manifest's indices instead.
    other = UnlearningDataModule("digits", forget=ClassForget(0), seed=99, manifest=str(path))
    other.setup()
    assert other.forget == RandomForget(count=40)
    for key in dm.indices:
        assert np.array_equal(dm.indices[key], other.indices[key])
    wrong = UnlearningDataModule("mnist5k", manifest=str(path))
    with pytest.raises(ValueError, match="has dataset='digits', but this data module has 'mnist5k'"):
        wrong.setup()


def test_batches_carry_dataset_indices():
    dm = make(SubclassForget(5, 0.5), batch_size=8)
    x, y, idx = next(iter(dm.dataloader("forget", shuffle=True)))
    assert x.shape == (8, 1, 8, 8) and y.dtype == torch.long
    assert set(idx.tolist()) <= set(dm.forget_indices.tolist())
    assert torch.equal(y, torch.as_tensor(dm.data.train_targets[idx.numpy()]))
    order1 = [b[2] for b in dm.dataloader("retain", shuffle=True)]
    order2 = [b[2] for b in dm.dataloader("retain", shuffle=True)]
    assert all(torch.equal(a, b) for a, b in zip(order1, order2))


def test_from_datasets_serves_user_data():
    xs = torch.randn(60, 3)
    ys = torch.arange(60) % 3
    train = torch.utils.data.TensorDataset(xs, ys)
    dm = UnlearningDataModule.from_datasets(train, train, forget=ClassForget(1))
    dm.setup()
    assert dm.num_classes == 3 and dm.forget_indices.size == 20
    assert len(dm.split_dataset("test_retain")) == 40


def test_bundled_datasets():
    mnist = load_dataset("mnist5k")
    assert len(mnist.train) == 4000 and len(mnist.test) == 1000 and mnist.input_shape == (1, 28, 28)
    assert np.bincount(mnist.test_targets).tolist() == [100] * 10
    digits = load_dataset("digits")
    assert digits.num_classes == 10 and digits.input_shape == (1, 8, 8)


def test_torchvision_dataset_missing_root_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*Copy the files there"):
        load_dataset("cifar10", root=str(tmp_path))
    with pytest.raises(ValueError, match="`root` is required for dataset 'svhn'"):
        load_dataset("svhn")
    with pytest.raises(ValueError, match="`dataset` must be one of"):
        load_dataset("imagenet")


def test_explicit_indices_are_never_held_out():
    """A sample the request names stays in the training split (it is forgotten, not held out as D_new/D_ref)."""
    held_out = make(ClassForget(0)).indices["new"][:2].tolist()
    dm = make(IndexForget(held_out))
    assert sorted(dm.indices["forget"].tolist()) == sorted(held_out)
    assert not set(held_out) & (set(dm.indices["new"].tolist()) | set(dm.indices["ref"].tolist()))
    assert len(dm.indices["new"]) == len(make(ClassForget(0)).indices["new"])  # the held-out sizes are unchanged


def test_bad_arguments():
    with pytest.raises(ValueError, match="`new_fraction` must be in \\[0, 1\\), got 1.2"):
        UnlearningDataModule("digits", new_fraction=1.2)
    with pytest.raises(TypeError, match="`forget` must be a ForgetSpec"):
        UnlearningDataModule("digits", forget=[1, 2])
    dm = UnlearningDataModule("digits", forget=ClassForget(3))
    with pytest.raises(ValueError, match="Split 'new' is empty"):
        dm.split_dataset("new")
    with pytest.raises(ValueError, match="`split` must be one of"):
        dm.dataloader("validation")


def test_index_keyed_randomness_ignores_order_and_batching():
    idx = torch.arange(1000)
    u = index_uniform(idx, seed=3)
    perm = torch.randperm(1000)
    assert torch.equal(index_uniform(idx[perm], seed=3), u[perm])
    assert 0.45 < u.mean().item() < 0.55 and not torch.equal(u, index_uniform(idx, seed=4))
    r = index_randint(idx, 7, seed=0)
    assert r.min() == 0 and r.max() == 6
    labels = idx % 10
    other = index_random_other_label(idx, labels, 10, seed=0)
    assert (other != labels).all() and set(other.tolist()) == set(range(10))


def test_shuffled_order_is_a_function_of_seed_and_epoch():
    dm = make(RandomForget(count=64), batch_size=16)
    loader = dm.dataloader("forget", shuffle=True)
    loader.sampler.set_epoch(3)
    epoch3 = torch.cat([b[2] for b in loader])
    fresh = dm.dataloader("forget", shuffle=True)
    fresh.sampler.set_epoch(2)
    assert not torch.equal(torch.cat([b[2] for b in fresh]), epoch3)
    fresh.sampler.set_epoch(3)
    assert torch.equal(torch.cat([b[2] for b in fresh]), epoch3)
    assert sorted(epoch3.tolist()) == dm.forget_indices.tolist()


def test_seeds_mean_one_thing_each():
    """The held-out split, the forget draw and the bundled train/test split each have their own seed."""
    from lightning_unlearn import RandomForget

    def indices(**seeds):
        dm = UnlearningDataModule("digits", forget=RandomForget(fraction=0.1), ref_fraction=0.1, **seeds)
        dm.setup()
        return dm

    base = indices(seed=0)
    other_draw = indices(seed=0, forget_seed=5)
    assert np.array_equal(base.indices["train"], other_draw.indices["train"])  # the original's data is unchanged
    assert np.array_equal(base.indices["ref"], other_draw.indices["ref"])
    assert not np.array_equal(base.forget_indices, other_draw.forget_indices)  # only the request moved
    assert np.array_equal(base.forget_indices, indices(seed=0, forget_seed=0).forget_indices)
    other_split = indices(seed=0, split_seed=1)
    assert not torch.equal(other_split.data.test.tensors[0], base.data.test.tensors[0])
    assert np.array_equal(np.sort(other_split.data.test_targets), np.sort(base.data.test_targets))  # stratified
    with pytest.raises(ValueError, match="`forget_seed` must be an integer >= 0, got -1"):
        UnlearningDataModule("digits", forget_seed=-1)


def test_manifest_records_the_split_seed(tmp_path):
    dm = UnlearningDataModule("digits", forget=ClassForget(1), split_seed=2)
    path = dm.save_manifest(tmp_path / "m.json")
    assert json.loads(path.read_text())["split_seed"] == 2
    with pytest.raises(ValueError, match="has split_seed=2, but this data module has 0"):
        UnlearningDataModule("digits", manifest=str(path)).setup()
    UnlearningDataModule("digits", manifest=str(path), split_seed=2).setup()


def test_a_manifest_is_read_as_given_or_refused(tmp_path):
    """A manifest path that is not a file, or a manifest whose splits are not a partition of valid
    indices, is an error naming it: never a fresh split, the last sample for -1, or training on D_f."""
    import json

    dm = UnlearningDataModule("digits", forget=ClassForget(0))
    path = dm.save_manifest(tmp_path / "manifest.json")
    good = json.loads(path.read_text())
    with pytest.raises(FileNotFoundError, match="`manifest` .*manifest.jsn' is not a file"):
        UnlearningDataModule("digits", manifest=str(tmp_path / "manifest.jsn")).setup()

    def broken(change) -> str:
        payload = json.loads(json.dumps(good))
        change(payload["indices"])
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(payload))
        return str(bad)

    first_forget = good["indices"]["forget"][0]
    cases = [
        (lambda i: i["forget"].__setitem__(0, -1), r"split 'forget' holds indices outside 0\.\.\d+: \[-1\]"),
        (lambda i: i["retain"].append(first_forget), "holds duplicated indices|'forget' and 'retain' must split 'train' exactly"),
        (lambda i: i["retain"].pop(), "'forget' and 'retain' must split 'train' exactly"),
        (lambda i: i["forget"].__setitem__(0, 5.5), "split 'forget' must be a list of integer indices"),
        (lambda i: i.pop("retain"), "has no 'retain' split"),
        (lambda i: i.__setitem__("ref", [good["indices"]["train"][0]]), r"held-out splits \('new', 'ref'\) overlap the training split"),
    ]
    for change, match in cases:
        with pytest.raises(ValueError, match=match):
            UnlearningDataModule("digits", manifest=broken(change)).setup()


def test_validation_is_named_for_the_split_it_runs_on(tmp_path):
    """A plain classifier validates on D_t (the data module holds out no validation split): the key says so."""
    import csv

    from lightning.pytorch import Trainer, seed_everything
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from lightning_unlearn import Classifier
    from lightning_unlearn.outputs import predict

    seed_everything(0, verbose=False)
    dm = UnlearningDataModule("digits", forget=ClassForget([3]), batch_size=64)
    dm.setup()
    assert dm.val_split == "test"
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    classifier = Classifier(network, 10, dm.input_shape, lr=1e-2)
    checkpoint = ModelCheckpoint(tmp_path / "ckpt", monitor="val/test_acc", mode="max")
    logger = CSVLogger(tmp_path, name="fit")
    trainer = Trainer(max_epochs=2, callbacks=[checkpoint], logger=logger, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(classifier, datamodule=dm)
    assert "val/test_acc" in trainer.callback_metrics and "val/acc" not in trainer.callback_metrics
    rows = list(csv.DictReader(open(logger.log_dir + "/metrics.csv")))
    logged = [float(r["val/test_acc"]) for r in rows if r.get("val/test_acc")]
    assert len(logged) == 2 and logged[-1] == pytest.approx(predict(classifier, dm.dataloader("test")).accuracy)
    assert float(checkpoint.best_model_score) == pytest.approx(max(logged))  # monitor="val/test_acc" works
    # Loaders given directly: nothing names the split, the key stays generic.
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(classifier, dm.dataloader("train", shuffle=True), dm.dataloader("test"))
    assert "val/acc" in trainer.callback_metrics and "val/test_acc" not in trainer.callback_metrics
