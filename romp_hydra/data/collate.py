"""Stack per-sample dicts from :class:`~romp_hydra.data.pipeline.SamplePipeline` into a batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch


def collate_samples(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate samples into a batch dict (docs/architecture.md, "Training batch").

    Arrays, numpy scalars, Python numbers/bools and tensors are stacked along a new first dimension into
    torch tensors (dtypes kept: uint8 images stay uint8, bool masks stay bool). Anything else (strings,
    lists, other objects) becomes a list with one entry per sample.

    Raises:
        ValueError: for an empty list, samples with different keys, or mismatched shapes (naming the key).
    """
    if len(samples) == 0:
        raise ValueError("collate_samples got no samples; the DataLoader batch is empty")
    keys = list(samples[0].keys())
    for position, sample in enumerate(samples[1:], start=1):
        if set(sample.keys()) != set(keys):
            difference = sorted(set(keys).symmetric_difference(sample.keys()))
            raise ValueError(f"sample {position} has different keys from sample 0: {difference}")
    return {key: _collate_values(key, [sample[key] for sample in samples]) for key in keys}


def _collate_values(key: str, values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, torch.Tensor):
        arrays = values
    elif isinstance(first, (np.ndarray, np.generic, bool, int, float)):
        arrays = [torch.from_numpy(np.asarray(value)) for value in values]
    else:
        return list(values)
    shapes = {tuple(array.shape) for array in arrays}
    if len(shapes) > 1:
        raise ValueError(f"cannot batch '{key}': per-sample shapes differ {sorted(shapes)}")
    return torch.stack(arrays, dim=0)
