"""SVD initializations of the rewrites, in NumPy: each returns the new kernels and ||W - W'|| / ||W||.

- :func:`separable_factors`: per input channel ``c``, the slice ``W[:, :, c, :]`` (k*k by C_out) is
  replaced by its best rank-``m`` approximation; the left singular vectors (scaled by sqrt(s)) are the
  depthwise kernels of channel ``c``, the right ones the pointwise rows ``c*m + j``.
- :func:`bottleneck_factors`: ``W`` unfolded along the input-channel mode (C_in by k*k*C_out) and cut to
  rank ``r``: the left vectors are the 1x1 reduction, the rest the kxk conv on ``r`` channels.
- :func:`dense_factors`: truncated SVD of a Dense kernel.

Each factorization is exact when the rank is full, and the optimum in Frobenius norm otherwise
(Eckart-Young), so the rewritten layer starts as close to the trained one as its shape allows.

Example:
    >>> rng = np.random.default_rng(0)
    >>> w = rng.normal(size=(3, 3, 4, 8)).astype("float32")
    >>> dw, pw, err = separable_factors(w, multiplier=1)
    >>> dw.shape, pw.shape, 0 < err < 1
    ((3, 3, 4, 1), (1, 1, 4, 8), True)
    >>> separable_factors(w, multiplier=8)[2] < 1e-6  # rank min(9, 8) = 8: exact
    True
    >>> red, conv, err = bottleneck_factors(w, width=4)
    >>> red.shape, conv.shape, err < 1e-6
    ((1, 1, 4, 4), (3, 3, 4, 8), True)
    >>> rank_for_energy(np.array([3.0, 2.0, 1.0]), 0.9)  # 9 + 4 = 13 of 14
    2
"""
from __future__ import annotations

import numpy as np

__all__ = ["bottleneck_factors", "dense_factors", "rank_for_energy", "relative_error", "separable_factors"]


def relative_error(w: np.ndarray, approx: np.ndarray) -> float:
    """``||w - approx|| / ||w||`` (0 for an all-zero ``w`` reproduced exactly)."""
    norm = float(np.linalg.norm(w))
    diff = float(np.linalg.norm(np.asarray(w, np.float64) - approx))
    return diff / norm if norm > 0 else diff


def separable_factors(kernel: np.ndarray, *, multiplier: int = 1) -> tuple[np.ndarray, np.ndarray, float]:
    """Depthwise ``(k, k, C, m)`` and pointwise ``(1, 1, C*m, F)`` kernels approximating ``kernel (k, k, C, F)``."""
    kh, kw, c_in, c_out = kernel.shape
    w = np.asarray(kernel, np.float64)
    depthwise = np.zeros((kh, kw, c_in, multiplier))
    pointwise = np.zeros((c_in * multiplier, c_out))
    approx = np.zeros_like(w)
    rank = min(kh * kw, c_out, multiplier)
    for c in range(c_in):
        u, s, vt = np.linalg.svd(w[:, :, c, :].reshape(kh * kw, c_out), full_matrices=False)
        root = np.sqrt(s[:rank])
        depthwise[:, :, c, :rank] = (u[:, :rank] * root).reshape(kh, kw, rank)
        pointwise[c * multiplier:c * multiplier + rank] = root[:, None] * vt[:rank]
        approx[:, :, c, :] = ((u[:, :rank] * s[:rank]) @ vt[:rank]).reshape(kh, kw, c_out)
    return (depthwise.astype(np.float32), pointwise.reshape(1, 1, c_in * multiplier, c_out).astype(np.float32),
            relative_error(w, approx))


def bottleneck_factors(kernel: np.ndarray, *, width: int) -> tuple[np.ndarray, np.ndarray, float]:
    """A 1x1 reduction ``(1, 1, C, r)`` and a kxk kernel ``(k, k, r, F)`` approximating ``kernel (k, k, C, F)``.

    The left singular vectors of the unfolded kernel ``M`` (C by k*k*F) come from the eigenvectors of the
    small C by C matrix ``M M^T`` (LAPACK's full SVD of the wide ``M`` takes seconds for C = 512); the kxk
    kernel is ``U_r^T M``, the same truncated factorization.
    """
    kh, kw, c_in, c_out = kernel.shape
    w = np.asarray(kernel, np.float64)
    unfolded = w.transpose(2, 0, 1, 3).reshape(c_in, kh * kw * c_out)
    _, vectors = np.linalg.eigh(unfolded @ unfolded.T)
    r = min(width, c_in)
    reduce = np.zeros((c_in, width))
    reduce[:, :r] = vectors[:, ::-1][:, :r]  # eigh sorts ascending
    conv = reduce.T @ unfolded
    approx = (reduce @ conv).reshape(c_in, kh, kw, c_out).transpose(1, 2, 0, 3)
    conv = conv.reshape(width, kh, kw, c_out).transpose(1, 2, 0, 3)
    return reduce.reshape(1, 1, c_in, width).astype(np.float32), conv.astype(np.float32), relative_error(w, approx)


def _top_right_vectors(w: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``rank`` largest singular values of ``w`` and their right singular vectors (columns), from the
    eigen-decomposition of the smaller Gram matrix (much faster than LAPACK's SVD of a large kernel)."""
    if w.shape[0] >= w.shape[1]:
        values, vectors = np.linalg.eigh(w.T @ w)
        values, vectors = values[::-1][:rank], vectors[:, ::-1][:, :rank]
        return np.sqrt(np.maximum(values, 0)), vectors
    values, left = np.linalg.eigh(w @ w.T)
    values, left = values[::-1][:rank], left[:, ::-1][:, :rank]
    s = np.sqrt(np.maximum(values, 0))
    right = (w.T @ left) / np.where(s > 0, s, 1)
    return s, right


def dense_factors(kernel: np.ndarray, *, rank: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Kernels ``(n, r)`` and ``(r, m)`` whose product is the best rank-``r`` approximation of ``kernel (n, m)``."""
    w = np.asarray(kernel, np.float64)
    s, v = _top_right_vectors(w, rank)
    root = np.sqrt(s)
    first = (w @ v) / np.where(root > 0, root, 1)  # U_r sqrt(S_r)
    second = root[:, None] * v.T
    return first.astype(np.float32), second.astype(np.float32), relative_error(w, first @ second)


def singular_values(kernel: np.ndarray) -> np.ndarray:
    """Singular values of a 2-D kernel, largest first."""
    w = np.asarray(kernel, np.float64)
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    return np.sqrt(np.maximum(np.linalg.eigvalsh(gram)[::-1], 0))


def rank_for_energy(singular: np.ndarray, energy: float) -> int:
    """The smallest rank whose singular values keep ``energy`` of the total squared energy."""
    power = np.asarray(singular, np.float64) ** 2
    total = power.sum()
    if total <= 0:
        return 1
    return int(min(len(power), np.searchsorted(np.cumsum(power) / total, energy - 1e-12) + 1))
