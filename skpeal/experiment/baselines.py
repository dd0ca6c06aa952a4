"""Baselines of the protocol: the linear probe on frozen image features.

The probe is what users would otherwise do cheaply: a logistic regression on standardised
frozen-backbone features, with least-confidence sampling. It is a plain scikit-learn
classifier on feature rows; the runner drives it through the same
:class:`~skpeal.labeling.loop.ActiveLearningLoop` as the CLIP adapters, with skpeal's
seeded :func:`~skpeal.strategies.least_confidence_sampling` (modAL's
``uncertainty_sampling`` ranks by the same criterion).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

__all__ = ["LinearProbe"]


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Standardised logistic regression on feature rows, with proba over every class.

    Parameters
    ----------
    classes : array-like of int
        Every class id; ``predict_proba`` has one column per class, in this order, also
        for classes without a label yet (probability 0).
    random_state : int or None, default=None
        Seed of the logistic regression.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        ``classes``.
    seen_ : ndarray
        The labels seen in ``fit``. With a single one, ``predict_proba`` puts all mass on
        it (a logistic regression needs two).
    """

    def __init__(self, classes, random_state=None):
        self.classes = classes
        self.random_state = random_state

    def fit(self, X, y):
        """Fit on feature rows ``X`` of shape (n_samples, n_features) and class ids ``y``.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Frozen image features.
        y : array-like of shape (n_samples,)
            Class ids from ``classes``.

        Returns
        -------
        self : LinearProbe
        """
        self.classes_ = np.asarray(self.classes)
        self.seen_ = np.unique(y)
        self.lr_ = None
        if len(self.seen_) > 1:
            # standardised features: normalised CLIP-style features are tiny per dimension
            self.lr_ = make_pipeline(
                StandardScaler(), LogisticRegression(max_iter=2000, random_state=self.random_state)
            )
            self.lr_.fit(X, y)
        return self

    def predict_proba(self, X):
        """Class probabilities of feature rows, one column per entry of ``classes_``.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Frozen image features.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self, "seen_")
        columns = {c: i for i, c in enumerate(self.classes_.tolist())}
        out = np.zeros((len(X), len(self.classes_)))
        if self.lr_ is None:
            out[:, columns[self.seen_[0].item()]] = 1.0
        else:
            cols = [columns[c] for c in self.lr_.classes_.tolist()]
            out[:, cols] = self.lr_.predict_proba(X)
        return out
