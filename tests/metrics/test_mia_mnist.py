"""Membership inference on MNIST-5k: a model that memorised D_f is caught, one that never saw D_f is not.

Note: on MNIST the confidence p_y of members and non-members is ~1 for most samples, and the
SalUn-convention SVC (one feature, gamma="auto") then predicts a single class for every sample
(MIA-efficacy 1.0 for the memorised model here); the loss attack is the discriminating one.
"""

from __future__ import annotations

import torch
from torch.utils.data import ConcatDataset, DataLoader, Subset

from lightning_unlearn.metrics.functional import loss_mia, mia_efficacy
from lightning_unlearn.models import LeNet5
from lightning_unlearn.outputs import predict
from quality import SEEDS, mean, per_seed, quality

MEMBERS = 256


def _overfit(dataset, epochs: int = 40, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = LeNet5()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    loader = DataLoader(dataset, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))
    model.train()
    for _ in range(epochs):
        for x, y, _ in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    return model.eval()


def _scores(dm, seed: int) -> dict[str, tuple[float, float, float]]:
    forget, retain = dm.split_dataset("forget"), dm.split_dataset("retain")
    members = Subset(retain, list(range(MEMBERS)))  # D_r members shared by both models
    memorised = _overfit(ConcatDataset([members, forget]), seed=seed)
    unseen = _overfit(members, seed=seed)  # never trained on D_f

    loader = lambda ds: DataLoader(ds, batch_size=512)  # noqa: E731
    scores = {}
    for name, model in (("memorised", memorised), ("unseen", unseen)):
        f, t, r = predict(model, loader(forget)), predict(model, dm.dataloader("test")), predict(model, loader(members))
        attack_acc, _ = loss_mia(f.logits, f.labels, t.logits, t.labels, f.indices, t.indices)
        efficacy = mia_efficacy(r.logits, r.labels, t.logits, t.labels, f.logits, f.labels)
        # For a model that never saw D_f, D_f is exchangeable with D_t: the SVC's non-member rate on D_t.
        test_rate = mia_efficacy(r.logits, r.labels, t.logits, t.labels, t.logits, t.labels)
        scores[name] = (float(attack_acc), float(efficacy), float(test_rate))
    print(seed, scores, flush=True)
    return scores


@quality
def test_mia_separates_memorised_from_unseen_forget_set(mnist_dm):
    scores = {seed: _scores(mnist_dm("random128", seed), seed) for seed in SEEDS}
    memorised = per_seed("loss_attack/memorised", lambda s: scores[s]["memorised"][0])
    unseen = per_seed("loss_attack/unseen", lambda s: scores[s]["unseen"][0])
    assert mean(memorised) > 0.58, memorised  # the loss attack tells memorised D_f from D_t: 0.62-0.65 (spread 0.04)
    assert abs(mean(unseen) - 0.5) < 0.08, unseen  # chance level: 0.46-0.52 (mean 0.485, spread 0.06)
    # MIA-efficacy (the SalUn convention): for a model that never saw D_f, D_f is scored like D_t.
    efficacy = per_seed("efficacy/unseen_minus_test_rate", lambda s: scores[s]["unseen"][1] - scores[s]["unseen"][2])
    assert abs(mean(efficacy)) <= 0.1, efficacy  # measured -0.04, +0.01, +0.05 (mean 0.004, spread 0.086)
