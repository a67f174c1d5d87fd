"""Forget specifications: sizes, disjointness, determinism and every bad request."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_unlearn.data import ClassForget, ForgetSpec, IndexForget, RandomForget, SubclassForget

LABELS = np.repeat(np.arange(5), 20)  # 100 samples, 20 per class
CANDIDATES = np.arange(100, 200)  # dataset indices need not start at 0


def select(spec: ForgetSpec, seed: int = 0) -> np.ndarray:
    return spec.select(CANDIDATES, LABELS, num_classes=5, seed=seed)


def test_class_forget_takes_every_sample_of_the_classes():
    chosen = select(ClassForget([1, 3]))
    assert chosen.tolist() == CANDIDATES[np.isin(LABELS, [1, 3])].tolist()
    assert ClassForget(2).forget_classes == [2]


def test_subclass_forget_takes_a_fraction_of_one_class():
    chosen = select(SubclassForget(class_id=4, fraction=0.25))
    assert chosen.size == 5
    assert set(LABELS[chosen - 100]) == {4}
    assert SubclassForget(4).forget_classes is None


@pytest.mark.parametrize("spec, size", [(RandomForget(count=17), 17), (RandomForget(fraction=0.3), 30)])
def test_random_forget_sizes_and_spread(spec, size):
    chosen = select(spec)
    assert chosen.size == size == np.unique(chosen).size
    assert len(set(LABELS[chosen - 100])) > 1


def test_index_forget_returns_the_request_sorted():
    assert select(IndexForget([150, 101, 199])).tolist() == [101, 150, 199]


@pytest.mark.parametrize("spec", [SubclassForget(0, 0.5), RandomForget(count=10)])
def test_draws_are_deterministic_under_a_seed(spec):
    assert np.array_equal(select(spec, seed=7), select(spec, seed=7))
    assert not np.array_equal(select(spec, seed=7), select(spec, seed=8))


@pytest.mark.parametrize("spec", [ClassForget([0, 4]), SubclassForget(2, 0.3), RandomForget(count=5), IndexForget([100, 177])])
def test_round_trip_through_dict(spec):
    assert ForgetSpec.from_dict(spec.to_dict()) == spec


def test_bad_requests_have_clear_errors():
    with pytest.raises(ValueError, match="`indices` is empty"):
        IndexForget([])
    with pytest.raises(ValueError, match="duplicated entries: \\[105\\]"):
        IndexForget([105, 106, 105])
    with pytest.raises(ValueError, match="`indices` contains \\[7, 250\\], which are not indices of the training split"):
        select(IndexForget([7, 150, 250]))
    with pytest.raises(ValueError, match="`classes` contains \\[9\\], which are not in the label space 0..4"):
        select(ClassForget(9))
    with pytest.raises(ValueError, match="`class_id` contains \\[-1\\]"):
        select(SubclassForget(-1))
    with pytest.raises(ValueError, match="the retain set would be empty"):
        select(ClassForget([0, 1, 2, 3, 4]))
    with pytest.raises(ValueError, match="the retain set would be empty"):
        select(IndexForget(CANDIDATES.tolist()))
    with pytest.raises(ValueError, match="`classes` must name at least one class"):
        ClassForget([])
    with pytest.raises(ValueError, match="`fraction` must be a number in \\(0, 1\\), got 1.5"):
        SubclassForget(0, 1.5)
    with pytest.raises(ValueError, match="Give exactly one of `count` and `fraction`"):
        RandomForget(count=3, fraction=0.1)
    with pytest.raises(ValueError, match="`count`=500 exceeds the 100 samples"):
        select(RandomForget(count=500))
    with pytest.raises(ValueError, match="selects an empty forget set"):
        RandomForget(fraction=0.001).select(CANDIDATES, LABELS, 5, 0)
    with pytest.raises(ValueError, match="Unknown forget specification type 'Nope'"):
        ForgetSpec.from_dict({"type": "Nope"})


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: IndexForget([5.7, 9.2]), TypeError, r"`indices` must be integers \(dataset indices\), got 5.7 \(float\)"),
        (lambda: IndexForget(["5", "9"]), TypeError, r"`indices` must be integers .* got '5' \(str\)"),
        (lambda: IndexForget([True]), TypeError, r"`indices` must be integers .* got True \(bool\)"),
        (lambda: IndexForget(np.array([3.0, 4.0])), TypeError, r"`indices` must be integers .* got 3.0 \(float\)"),
        (lambda: IndexForget(5), TypeError, r"`indices` must be a list of integers"),
        (lambda: ClassForget(3.0), TypeError, r"`classes` must be an integer or a list of integers \(class ids\), got 3.0"),
        (lambda: ClassForget("3"), TypeError, r"`classes` must be an integer or a list of integers .* got '3' \(str\)"),
        (lambda: ClassForget([1, 2.5]), TypeError, r"`classes` must be integers \(class ids\), got 2.5 \(float\)"),
        (lambda: SubclassForget(class_id=3.7), TypeError, r"`class_id` must be an integer \(a class id\), got 3.7"),
        (lambda: SubclassForget(3, fraction="0.1"), ValueError, r"`fraction` must be a number in \(0, 1\), got '0.1'"),
        (lambda: RandomForget(count=2.5), ValueError, r"`count` must be an integer >= 1, got 2.5"),
        (lambda: RandomForget(fraction=float("nan")), ValueError, r"`fraction` must be a number in \(0, 1\), got nan"),
    ],
)
def test_a_request_of_the_wrong_type_is_refused_not_coerced(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_integer_arrays_are_requests_too():
    import torch

    assert IndexForget(np.array([3, 4])).indices == [3, 4] == IndexForget(torch.tensor([3, 4])).indices
    assert ClassForget(np.int64(3)).classes == [3] and SubclassForget(np.int64(3)).class_id == 3
