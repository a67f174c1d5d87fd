"""Forget specifications: which training samples a deletion request removes.

Four scenarios: every sample of some classes, a fraction
of one class (Prototype Surgery's sub-class setting), a random count or fraction across
classes, and an explicit list of dataset indices. A specification is a small, typed,
serialisable object; :meth:`ForgetSpec.select` turns it into sorted dataset indices and
validates the request against the training split it is applied to.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class ForgetSpec(ABC):
    """Base class of the forget specifications."""

    @abstractmethod
    def _choose(self, candidates: np.ndarray, labels: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
        """Return the chosen dataset indices among ``candidates`` (labels aligned with them)."""

    @property
    def forget_classes(self) -> list[int] | None:
        """The classes removed entirely (class-wise forgetting), else ``None``."""
        return None

    def select(self, candidates: np.ndarray, labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
        """Choose the forget set.

        Args:
            candidates: dataset indices of the training split (the pool to forget from).
            labels: label of each candidate, aligned with ``candidates``.
            num_classes: size of the label space.
            seed: seed of the draw (sub-class and random scenarios).

        Returns:
            Sorted unique int64 dataset indices.

        Raises:
            ValueError: if the request is empty or would remove the whole training split.
        """
        candidates = np.asarray(candidates, dtype=np.int64)
        labels = np.asarray(labels, dtype=np.int64)
        rng = np.random.default_rng(seed)
        chosen = np.sort(np.asarray(self._choose(candidates, labels, num_classes, rng), dtype=np.int64))
        if chosen.size == 0:
            raise ValueError(f"{self!r} selects an empty forget set: there is nothing to unlearn.")
        if chosen.size >= candidates.size:
            raise ValueError(
                f"{self!r} selects all {candidates.size} training samples: the retain set would be empty."
                " Forget a subset of the training data instead."
            )
        return chosen

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, **self._params()}

    @abstractmethod
    def _params(self) -> dict[str, Any]: ...

    def __repr__(self) -> str:
        def short(value: Any) -> str:  # a request of thousands of indices stays one short line in messages
            if isinstance(value, list) and len(value) > 10:
                return f"[{', '.join(map(repr, value[:5]))}, ... ({len(value)} in all)]"
            return repr(value)

        args = ", ".join(f"{k}={short(v)}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ForgetSpec) and self.to_dict() == other.to_dict()

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ForgetSpec:
        """Inverse of :meth:`to_dict`."""
        kinds = {cls.__name__: cls for cls in (ClassForget, SubclassForget, RandomForget, IndexForget)}
        kind = data.get("type")
        if kind not in kinds:
            raise ValueError(f"Unknown forget specification type {kind!r}; expected one of {sorted(kinds)}.")
        return kinds[kind](**{k: v for k, v in data.items() if k != "type"})


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _integers(values: Any, argument: str, what: str) -> list[int]:
    """``values`` as a list of ints; a float, string or bool among them is an error, not coerced."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"`{argument}` must be a list of integers ({what}), got {values!r} ({type(values).__name__}).")
    values = values.tolist() if hasattr(values, "tolist") else list(values)  # numpy arrays, torch tensors
    values = values if isinstance(values, list) else [values]
    bad = [v for v in values if not _is_integer(v)]
    if bad:
        raise TypeError(
            f"`{argument}` must be integers ({what}), got {bad[0]!r} ({type(bad[0]).__name__})"
            + (f" and {len(bad) - 1} more" if len(bad) > 1 else "") + "."
        )
    return [int(v) for v in values]


def _check_classes(classes: list[int], num_classes: int, argument: str) -> None:
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"`{argument}` contains {bad}, which are not in the label space 0..{num_classes - 1}.")


class ClassForget(ForgetSpec):
    """Forget every training sample of one or more classes (class-wise forgetting).

    Args:
        classes: the class ids to forget (an int or a list of ints).

    Example:
        >>> spec = ClassForget(classes=[3])
        >>> spec.select(np.arange(6), np.array([3, 1, 3, 2, 0, 1]), num_classes=4, seed=0).tolist()
        [0, 2]
    """

    def __init__(self, classes: int | list[int]) -> None:
        if _is_integer(classes):
            classes = [classes]  # type: ignore[list-item]
        elif not hasattr(classes, "__iter__") or isinstance(classes, (str, bytes)):
            raise TypeError(f"`classes` must be an integer or a list of integers (class ids), got {classes!r}"
                            f" ({type(classes).__name__}).")
        classes = _integers(classes, "classes", "class ids")
        if not classes:
            raise ValueError("`classes` must name at least one class to forget, got an empty list.")
        if len(set(classes)) != len(classes):
            raise ValueError(f"`classes` contains duplicates: {classes}.")
        self.classes = sorted(int(c) for c in classes)

    @property
    def forget_classes(self) -> list[int]:
        return list(self.classes)

    def _choose(self, candidates, labels, num_classes, rng):
        _check_classes(self.classes, num_classes, "classes")
        return candidates[np.isin(labels, self.classes)]

    def _params(self) -> dict[str, Any]:
        return {"classes": self.classes}


class SubclassForget(ForgetSpec):
    """Forget a random fraction of one class (sample-level forgetting inside a class).

    Args:
        class_id: the class whose samples are partly forgotten.
        fraction: fraction of that class's training samples to forget, in (0, 1).
    """

    def __init__(self, class_id: int, fraction: float = 0.1) -> None:
        if not _is_integer(class_id):
            raise TypeError(f"`class_id` must be an integer (a class id), got {class_id!r} ({type(class_id).__name__}).")
        if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0.0 < fraction < 1.0:
            raise ValueError(f"`fraction` must be a number in (0, 1), got {fraction!r}.")
        self.class_id = int(class_id)
        self.fraction = float(fraction)

    def _choose(self, candidates, labels, num_classes, rng):
        _check_classes([self.class_id], num_classes, "class_id")
        pool = candidates[labels == self.class_id]
        count = max(1, int(round(self.fraction * pool.size))) if pool.size else 0
        return rng.choice(pool, size=count, replace=False) if count else pool

    def _params(self) -> dict[str, Any]:
        return {"class_id": self.class_id, "fraction": self.fraction}


class RandomForget(ForgetSpec):
    """Forget samples drawn uniformly at random across all classes.

    Give exactly one of ``count`` and ``fraction``.

    Args:
        count: number of samples to forget.
        fraction: fraction of the training split to forget, in (0, 1).
    """

    def __init__(self, count: int | None = None, fraction: float | None = None) -> None:
        if (count is None) == (fraction is None):
            raise ValueError(f"Give exactly one of `count` and `fraction`, got count={count}, fraction={fraction}.")
        if count is not None and (not _is_integer(count) or count < 1):
            raise ValueError(f"`count` must be an integer >= 1, got {count!r}.")
        if fraction is not None and (not isinstance(fraction, (int, float)) or isinstance(fraction, bool)
                                     or not 0.0 < fraction < 1.0):
            raise ValueError(f"`fraction` must be a number in (0, 1), got {fraction!r}.")
        self.count = count
        self.fraction = fraction

    def _choose(self, candidates, labels, num_classes, rng):
        size = self.count if self.count is not None else int(round(self.fraction * candidates.size))
        if size > candidates.size:
            raise ValueError(f"`count`={size} exceeds the {candidates.size} samples of the training split.")
        return rng.choice(candidates, size=size, replace=False)

    def _params(self) -> dict[str, Any]:
        return {"count": self.count, "fraction": self.fraction}


class IndexForget(ForgetSpec):
    """Forget an explicit list of training-set indices (a "delete these records" request).

    Args:
        indices: dataset indices into the training dataset.
    """

    def __init__(self, indices: list[int]) -> None:
        indices = _integers(indices, "indices", "dataset indices")
        if not indices:
            raise ValueError("`indices` is empty: give at least one dataset index to forget.")
        seen: set[int] = set()
        dupes = sorted({i for i in indices if i in seen or seen.add(i)})
        if dupes:
            raise ValueError(f"`indices` contains duplicated entries: {dupes[:10]}.")
        self.indices = indices

    def _choose(self, candidates, labels, num_classes, rng):
        requested = np.asarray(self.indices, dtype=np.int64)
        missing = requested[~np.isin(requested, candidates)]
        if missing.size:
            raise ValueError(
                f"`indices` contains {missing[:5].tolist()}{f' and {missing.size - 5} more' if missing.size > 5 else ''}, which are not"
                f" indices of the training split (valid: {candidates.size} indices between {candidates.min()}"
                f" and {candidates.max()}, excluding held-out samples)."
            )
        return requested

    def _params(self) -> dict[str, Any]:
        return {"indices": self.indices}
