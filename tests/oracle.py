"""Independent NumPy implementations of DANet's attention, straight from the paper's equations.

Deliberately written in the paper's notation (S = softmax(B^T C), E = alpha * D S^T + A; X =
softmax(rowmax(A A^T) - A A^T), E = beta * X A + A), in float64, with no shared code.
"""

from __future__ import annotations

import numpy as np


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def conv1x1(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """x: [C, N], weight: [C', C, 1, 1] -> [C', N]."""
    out = weight[:, :, 0, 0].astype(np.float64) @ x
    return out if bias is None else out + bias[:, None]


def pam(x: np.ndarray, wq, bq, wk, bk, wv, bv, gamma: float, rows: np.ndarray | None = None) -> np.ndarray:
    """Position attention of one image x [C, H, W]; only the output positions in ``rows`` if given."""
    c, h, w = x.shape
    a = x.reshape(c, h * w).astype(np.float64)
    b_ = conv1x1(a, wq, bq)  # B: queries [C', N]
    c_ = conv1x1(a, wk, bk)  # C: keys    [C', N]
    d = conv1x1(a, wv, bv)  # D: values  [C, N]
    rows = np.arange(h * w) if rows is None else rows
    s = _softmax(b_[:, rows].T @ c_, axis=-1)  # S[j, i] over keys i, for query positions j
    e = gamma * (d @ s.T) + a[:, rows]
    return e  # [C, len(rows)]


def cam(x: np.ndarray, gamma: float) -> np.ndarray:
    """Channel attention of one image x [C, H, W] -> [C, H*W]."""
    c, h, w = x.shape
    a = x.reshape(c, h * w).astype(np.float64)
    energy = a @ a.T
    attention = _softmax(energy.max(axis=-1, keepdims=True) - energy, axis=-1)
    return gamma * (attention @ a) + a
