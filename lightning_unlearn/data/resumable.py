"""A DataLoader whose place in the epoch travels in Lightning's checkpoints.

Lightning saves the ``state_dict()`` of every training loader that has one in the fit loop's
part of a checkpoint and, when a fit resumes from a checkpoint taken in the middle of an epoch,
hands it back through ``load_state_dict()`` before the loader is iterated again (the
``CombinedLoader`` states of :class:`~lightning.pytorch.loops.fit_loop._FitLoop`). A plain
``DataLoader`` has no state, so the resumed epoch restarts its order from the first batch.

:class:`ResumableDataLoader` records how many batches its current pass handed out, and the
epoch of that pass; restored, the next pass of that same epoch skips those batches. The order
itself is the sampler's: a pure function of ``(seed, epoch)`` for the samplers of this package
(:class:`~lightning_unlearn.data.datamodule.EpochRandomSampler`, SULI's layer sampler), so the
resumed run sees exactly the batches an uninterrupted one sees. Skipped batches are skipped
as lists of indices, before any sample is loaded.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader


class _SkipFirst:
    """The loader's index sampler, less the batches its loader is told to skip when a pass starts."""

    def __init__(self, loader: ResumableDataLoader, sampler: Any) -> None:
        self.loader, self.sampler = loader, sampler

    def __iter__(self) -> Iterator[Any]:
        skip = getattr(self.loader, "_skip_now", 0)
        iterator = iter(self.sampler)
        return itertools.islice(iterator, skip, None) if skip else iterator

    def __len__(self) -> int:
        return len(self.sampler)


class _Pass:
    """One pass over the loader. It starts at its first ``next``, after Lightning's ``set_epoch``."""

    def __init__(self, loader: ResumableDataLoader) -> None:
        self.loader = loader
        self.iterator: Iterator[Any] | None = None

    def __iter__(self) -> _Pass:
        return self

    def __len__(self) -> int:
        return len(self.loader)

    def __next__(self) -> Any:
        if self.iterator is None:
            self.iterator = self.loader._start_pass()
        batch = next(self.iterator)
        self.loader._yielded += 1
        return batch


class ResumableDataLoader(DataLoader):
    """A DataLoader with Lightning's resumable-loader interface (``state_dict``/``load_state_dict``).

    The state is ``{"epoch": e, "batches": n}``: the pass of epoch ``e`` (the sampler's, set by
    Lightning through ``set_epoch``) had handed out ``n`` batches. After ``load_state_dict`` the
    first pass of epoch ``e`` starts at batch ``n``; a pass of another epoch (a checkpoint taken
    on an epoch's last batch resumes in the next epoch) starts at its first batch. Later passes
    (a loader cycled by a ``CombinedLoader``, the next epoch) always start at their first batch.

    A pass is started at its first ``next`` rather than at ``iter``: Lightning creates the
    iterator of a resumed fit before it calls ``set_epoch``, and worker processes receive their
    first indices as soon as the underlying iterator exists.

    ``len()`` is the full length of an epoch: Lightning counts the batches of the resumed epoch
    from the number restored with its own loop state and ends the epoch at that length.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._yielded = 0
        self._pass_epoch: int | None = None
        self._resume: tuple[int | None, int] | None = None
        self._skip_now = 0

    @property
    def _index_sampler(self) -> Any:  # read by torch's iterators when a pass starts
        return _SkipFirst(self, DataLoader._index_sampler.fget(self))  # type: ignore[attr-defined]

    def _sampler_epoch(self) -> int | None:
        for sampler in (self.sampler, getattr(self.batch_sampler, "sampler", None)):
            epoch = getattr(sampler, "epoch", None)
            if isinstance(epoch, int):
                return epoch
        return None

    def _start_pass(self) -> Iterator[Any]:
        epoch, skip = self._sampler_epoch(), 0
        if self._resume is not None:
            saved_epoch, batches = self._resume
            self._resume = None
            if saved_epoch is None or saved_epoch == epoch:
                skip = batches
        self._skip_now = skip
        try:
            if skip:  # this pass was created before the checkpoint: creating it again draws no random number
                with torch.random.fork_rng(devices=[]):
                    iterator = super().__iter__()
            else:
                iterator = super().__iter__()
        finally:
            self._skip_now = 0
        self._pass_epoch, self._yielded = epoch, skip
        return iterator

    def __iter__(self) -> _Pass:  # type: ignore[override]
        return _Pass(self)

    def state_dict(self) -> dict[str, Any]:
        """Where the current pass stands: its epoch and the batches it handed out."""
        if self._resume is not None:  # restored but not yet iterated: keep what was restored
            return {"epoch": self._resume[0], "batches": self._resume[1]}
        return {"epoch": self._pass_epoch, "batches": self._yielded}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Start the next pass of the saved epoch where the saved pass stood."""
        epoch, batches = state_dict.get("epoch"), state_dict.get("batches")
        if not isinstance(batches, int) or batches < 0 or not (epoch is None or isinstance(epoch, int)):
            raise ValueError(
                f"A resumable loader's state must be {{'epoch': int | None, 'batches': int >= 0}}, got {state_dict!r}."
            )
        self._resume = (epoch, batches)


def random_state() -> dict[str, Any]:
    """The global random state of torch (CPU and initialised CUDA devices), numpy and Python.

    Held in plain types and tensors, so a checkpoint that carries it loads with ``weights_only=True``.
    """
    kind, keys, position, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [str(kind), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(position), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict[str, Any]) -> None:
    """Restore a state taken by :func:`random_state`."""
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
