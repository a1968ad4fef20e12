"""Small vectorised random draws shared by the generators."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from db.seed.copy import FloatArray, IntArray


def lognormal(
    rng: np.random.Generator, median: FloatArray | float, sigma: float, n: int
) -> FloatArray:
    """``n`` positive values around ``median`` (scalar or per element), spread ``sigma``."""
    out: FloatArray = np.asarray(median) * np.exp(rng.normal(0.0, sigma, n))
    return out


def by_group(
    rng: np.random.Generator, group: IntArray, shares: npt.NDArray[np.float64]
) -> IntArray:
    """For each element, a category drawn from ``shares[group]`` (rows are normalised)."""
    out = np.zeros(group.size, dtype=np.int64)
    for g in range(shares.shape[0]):
        idx = np.flatnonzero(group == g)
        if idx.size:
            p = shares[g] / shares[g].sum()
            out[idx] = rng.choice(p.size, size=idx.size, p=p)
    return out


def sigmoid(x: FloatArray) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-x))
    return out
