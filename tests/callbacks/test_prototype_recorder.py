"""PrototypeRecorder: W0 at fit start, the Gram matrix at fit end, checkpoint and file round trips."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_unlearn import Classifier, IndexForget, UnlearningDataModule, make_trainer
from lightning_unlearn.callbacks import PrototypeRecorder, PrototypeRecording
from lightning_unlearn.passes import shard_loader
from lightning_unlearn.models import HeadNotFoundError

E, C, N = 6, 3, 120


def linear_problem(seed: int = 0) -> tuple[UnlearningDataModule, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, E, generator=gen)
    y = (x[:, :C] + 0.3 * torch.randn(N, C, generator=gen)).argmax(1)
    test = TensorDataset(x[:30], y[:30])
    dm = UnlearningDataModule.from_datasets(TensorDataset(x, y), test, IndexForget([1, 5, 7]), num_classes=C, batch_size=16,
                                            ref_fraction=0.0)  # every sample trains: G counts all N
    dm.setup()
    return dm, x


def fit_recorded(dm: UnlearningDataModule, recorder: PrototypeRecorder, epochs: int = 3, **trainer_kwargs) -> Classifier:
    torch.manual_seed(0)
    clf = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(E, C)), num_classes=C, optimizer="sgd", lr=0.1)
    trainer_kwargs.setdefault("limit_val_batches", 0)
    make_trainer(epochs, [recorder], **trainer_kwargs).fit(clf, datamodule=dm)
    return clf


def test_records_w0_gram_and_round_trips(tmp_path):
    dm, x = linear_problem()
    recorder = PrototypeRecorder()
    with pytest.raises(RuntimeError, match="no complete recording yet"):
        recorder.recording
    torch.manual_seed(0)
    initial = nn.Linear(E, C)  # the same seeded draw as the classifier's head below
    clf = fit_recorded(dm, recorder, default_root_dir=tmp_path, enable_checkpointing=False)
    rec = recorder.recording
    head = clf.model[1]
    assert torch.equal(rec.weight0[:, :-1], initial.weight.double()) and torch.equal(rec.weight0[:, -1], initial.bias.double())
    assert not torch.allclose(rec.weight0, rec.weight)  # training moved the head
    assert torch.equal(rec.weight[:, :-1], head.weight.detach().double())
    train = torch.cat([x[dm.indices["train"]].double(), torch.ones(N, 1, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(rec.gram, train.T @ train, rtol=1e-12, atol=1e-9)
    assert rec.num_samples == N and rec.embedding_dim == E and rec.num_classes == C

    restored = PrototypeRecorder()
    restored.load_state_dict(recorder.state_dict())
    loaded = PrototypeRecording.load(recorder.export(tmp_path / "rec.pt"))
    ckpt = tmp_path / "fit.ckpt"
    trainer = make_trainer(1, [PrototypeRecorder()], limit_val_batches=0)
    trainer.fit(Classifier(nn.Sequential(nn.Flatten(), nn.Linear(E, C)), num_classes=C), datamodule=dm)
    trainer.save_checkpoint(ckpt)
    from_ckpt = PrototypeRecording.load(ckpt)
    for other in (restored.recording, loaded):
        for key in ("weight0", "weight", "gram"):
            assert torch.equal(getattr(other, key), getattr(rec, key))
    assert from_ckpt.num_samples == N and not torch.equal(from_ckpt.weight0, rec.weight0)


def test_resume_keeps_w0_from_checkpoint(tmp_path):
    dm, _ = linear_problem()
    first = PrototypeRecorder()
    fit_recorded(dm, first, epochs=1, default_root_dir=tmp_path, enable_checkpointing=True)
    ckpt = next(tmp_path.rglob("*.ckpt"))
    payload = torch.load(ckpt, weights_only=False)
    state = next(v for k, v in payload["callbacks"].items() if k.startswith("PrototypeRecorder"))
    # written at the end of the last epoch, after the recorder's pass: the checkpoint holds the whole recording
    assert torch.equal(state["gram"], first.recording.gram) and torch.equal(state["weight0"], first.recording.weight0)
    resumed = PrototypeRecorder()
    clf = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(E, C)), num_classes=C, optimizer="sgd", lr=0.1)
    make_trainer(2, [resumed], limit_val_batches=0, default_root_dir=tmp_path).fit(clf, datamodule=dm, ckpt_path=ckpt)
    assert torch.equal(resumed.recording.weight0, first.recording.weight0)
    assert torch.equal(resumed.recording.gram, first.recording.gram)  # same backbone (identity): same G


def test_a_checkpoint_written_before_the_last_epoch_holds_w0_only(tmp_path):
    dm, _ = linear_problem()
    recorder = PrototypeRecorder()
    from lightning.pytorch.callbacks import ModelCheckpoint

    every_epoch = ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, every_n_epochs=1)
    make_trainer(2, [recorder, every_epoch], limit_val_batches=0, enable_checkpointing=True).fit(
        Classifier(nn.Sequential(nn.Flatten(), nn.Linear(E, C)), num_classes=C), datamodule=dm)
    states = {p.name: next(v for k, v in torch.load(p, weights_only=True)["callbacks"].items() if k.startswith("PrototypeRecorder"))
              for p in tmp_path.glob("*.ckpt")}
    first, last = (states[n] for n in sorted(states))  # epoch=0, epoch=1
    assert first["gram"] is None and torch.equal(first["weight0"], recorder.recording.weight0)
    assert torch.equal(last["gram"], recorder.recording.gram)


def test_the_recording_is_written_to_path_at_fit_end(tmp_path):
    dm, _ = linear_problem()
    recorder = PrototypeRecorder(path=tmp_path / "recording.pt")
    fit_recorded(dm, recorder, epochs=1)
    written = PrototypeRecording.load(tmp_path / "recording.pt")
    for key in ("weight0", "weight", "gram", "recorded"):
        assert torch.equal(getattr(written, key), getattr(recorder.recording, key)), key
    assert written.recorded.tolist() == sorted(dm.indices["train"].tolist())


class _ReluAfterHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(E, 8), nn.ReLU())
        self.out = nn.Linear(8, C)

    def forward(self, x):
        return torch.relu(self.out(self.body(x)))


def test_a_head_that_does_not_run_fails_on_the_first_batch_before_any_step():
    dm, _ = linear_problem()

    class Unused(_ReluAfterHead):
        def __init__(self) -> None:
            super().__init__()
            self.spare = nn.Linear(8, C)  # named as the head, never called

    trainer = make_trainer(3, [PrototypeRecorder(head="model.spare")], limit_val_batches=0)
    with pytest.raises(HeadNotFoundError, match=r"^The head 'model.spare' does not run in Classifier's forward pass"):
        trainer.fit(Classifier(Unused(), num_classes=C), datamodule=dm)
    assert trainer.global_step == 0


def test_operations_after_the_head_are_recorded_and_served():
    """Whatever follows the head, its updates lie in the span of the training embeddings: Naive PS applies."""
    from lightning_unlearn.methods import NaivePS

    dm, _ = linear_problem()
    recorder = PrototypeRecorder()
    torch.manual_seed(0)
    clf = Classifier(_ReluAfterHead(), num_classes=C, optimizer="sgd", lr=0.1)
    make_trainer(3, [recorder], limit_val_batches=0).fit(clf, datamodule=dm)
    assert recorder.recording.head_name == "model.out" and recorder.recording.num_samples == N
    method = NaivePS(clf, recording=recorder.recording.copy(), target=None, guard=None)
    kept = method.anatomy.head.weight.detach().clone()
    method.surgery(DataLoader(dm.split_dataset("forget"), batch_size=8))
    assert not torch.equal(method.anatomy.head.weight, kept)


def test_naive_ps_refuses_a_recording_that_does_not_match_the_request():
    from lightning_unlearn.methods import NaivePS

    dm, x = linear_problem()
    recorder = PrototypeRecorder()
    clf = fit_recorded(dm, recorder, epochs=2)
    forget = DataLoader(dm.split_dataset("forget"), batch_size=8)

    unseen = recorder.recording.copy()
    unseen.recorded = unseen.recorded[unseen.recorded != 5]
    method = NaivePS(clf, recording=unseen, target=None, guard=None)
    kept = method.anatomy.head.weight.detach().clone()
    with pytest.raises(ValueError, match=r"contains 1 sample\(s\) the recording never saw \(dataset indices \[5\]\)"):
        method.surgery(forget)
    assert torch.equal(method.anatomy.head.weight, kept)

    other = _rescaled_forget(dm, x, scale=10.0)  # e.g. the user's pipeline normalised, the recorded one did not
    method = NaivePS(clf, recording=recorder.recording.copy(), target=None, guard=None)
    with pytest.raises(ValueError, match=r"not part of the recorded training embeddings \(the smallest eigenvalue of G -"
                       r" X_f\^T X_f is -.*Likely cause: the data is preprocessed differently"):
        method.surgery(other)
    assert torch.equal(method.anatomy.head.weight, kept)

    with pytest.raises(ValueError, match=r"embeddings are not finite .*Likely cause: NaN/inf values in the forget set's inputs"):
        method.surgery(_rescaled_forget(dm, x, scale=float("nan")))
    assert torch.equal(method.anatomy.head.weight, kept)
    method.surgery(forget)  # the matching request is served
    assert not torch.equal(method.anatomy.head.weight, kept)


def _rescaled_forget(dm: UnlearningDataModule, x: torch.Tensor, scale: float) -> DataLoader:
    """The forget samples (x, y, index) with their inputs multiplied by ``scale`` (another preprocessing)."""
    idx = torch.as_tensor(dm.indices["forget"])
    y = torch.as_tensor(dm.split_targets("forget"))
    return DataLoader(TensorDataset(x[idx] * scale, y, idx), batch_size=8)


def test_shards_cover_every_sample_once():
    loader = DataLoader(TensorDataset(torch.arange(11)), batch_size=4, shuffle=True)
    seen = torch.cat([b[0] for rank in range(3) for b in shard_loader(loader, rank, 3)])
    assert sorted(seen.tolist()) == list(range(11))


def test_head_not_found_and_bad_arguments():
    dm, _ = linear_problem()
    with pytest.raises(HeadNotFoundError, match="does not name a submodule"):
        fit_recorded(dm, PrototypeRecorder(head="model.classifier"), epochs=1)
    with pytest.raises(ValueError, match="`num_classes` must be >= 2"):
        PrototypeRecorder(num_classes=1)
    with pytest.raises(ValueError, match="Inconsistent recording"):
        PrototypeRecording(torch.zeros(C, E + 1), torch.zeros(C, E), torch.zeros(E + 1, E + 1))


DDP_SCRIPT = """
import sys, torch, warnings, logging
warnings.filterwarnings("ignore"); logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
from torch import nn
from torch.utils.data import TensorDataset
from lightning_unlearn import Classifier, IndexForget, UnlearningDataModule, make_trainer
from lightning_unlearn.callbacks import PrototypeRecorder
from lightning_unlearn.methods import NaivePS, PS
OUT = sys.argv[2]
E, C, N = 6, 3, 101   # odd N: DistributedSampler would pad one duplicate
gen = torch.Generator().manual_seed(0)
x = torch.randn(N, E, generator=gen); y = (x[:, :C]).argmax(1)
dm = UnlearningDataModule.from_datasets(TensorDataset(x, y), TensorDataset(x[:30], y[:30]), IndexForget([1, 4, 7, 9, 50]), num_classes=C, batch_size=16, ref_fraction=0.0)
rec = PrototypeRecorder()
torch.manual_seed(0)
clf = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(E, C)), num_classes=C, optimizer="sgd", lr=0.1)
kw = dict(accelerator="cpu", devices=int(sys.argv[1]), strategy="ddp" if sys.argv[1] == "2" else "auto", limit_val_batches=0)
if sys.argv[1] == "1":
    make_trainer(1, [rec], accelerator="cpu", devices=1, limit_val_batches=0).fit(clf, datamodule=dm)
    torch.save({"clf": clf.state_dict(), "rec": rec.recording.to_dict()}, OUT + "/trained.pt")
from lightning_unlearn.callbacks import PrototypeRecording
saved = torch.load(OUT + "/trained.pt", weights_only=False)
clf.load_state_dict(saved["clf"]); rec._recording = PrototypeRecording.from_dict(saved["rec"])
layout = PrototypeRecorder()  # G recorded under this run's process layout (the backbone is the identity)
make_trainer(1, [layout], **kw).fit(Classifier(nn.Sequential(nn.Flatten(), nn.Linear(E, C)), num_classes=C), datamodule=dm)
m = NaivePS(clf, recording=rec.recording.copy(), ridge=0.0, target=None, guard=None)  # the surgery alone, no request
make_trainer(1, **kw).fit(m, datamodule=dm)
p = PS(clf, target=None, guard=None)
tr = make_trainer(1, **kw); tr.fit(p, datamodule=dm)
if tr.global_rank == 0:
    torch.save({"gram": layout.recording.gram, "naive": m.model.model[1].weight.detach(), "removed": m.recording.removed, "ps": p.model.model[1].weight.detach()}, OUT + f"/out{sys.argv[1]}.pt")
"""


def test_ddp_gram_and_surgery_equal_single_process(tmp_path):
    """2 gloo processes, 101 samples (DistributedSampler would pad one): G counts every sample once,
    and NaivePS / PS unlearn the same trained model exactly as one process does."""
    script = tmp_path / "ddp_prototype_surgery.py"
    script.write_text(DDP_SCRIPT)
    for devices in ("1", "2"):
        command = [sys.executable, str(script), devices, str(tmp_path)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            # A multi-process launch failed once in ~40 runs on the 2-core machine and never reproduced
            # in isolation: retry once (a real bug fails again) and surface the first failure.
            warnings.warn(f"{devices}-process run failed once, retrying; stderr tail:\n{done.stderr[-2000:]}", stacklevel=1)
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = (torch.load(tmp_path / f"out{d}.pt") for d in ("1", "2"))
    for key in ("gram", "naive", "ps"):
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-10, msg=key)
    assert one["gram"][-1, -1].item() == 101 and torch.equal(one["removed"], two["removed"])
