"""The pool and test data a config names, subsampled with the config's seed."""

from __future__ import annotations

import os

import numpy as np
from sklearn.model_selection import train_test_split

from .. import datasets
from .._validation import InvalidParameterError
from .config import ExperimentConfig

__all__ = ["load_data"]


def load_data(config: ExperimentConfig):
    """The pool / test data of a config as a :class:`sklearn.utils.Bunch`.

    ``pool_size`` and ``test_size`` take seeded (``data_seed``), class-stratified
    subsamples of the train and test splits.

    Parameters
    ----------
    config : ExperimentConfig
        The run's configuration (``data``, ``pool_size``, ``test_size``, ``data_seed``).

    Returns
    -------
    data : sklearn.utils.Bunch
        ``X_train`` (the pool), ``y_train`` (its hidden labels, class ids), ``X_test``,
        ``y_test``, ``classnames``.
    """
    if config.data == "fashion-mnist":
        return datasets.load_fashion_mnist(
            n_train=config.pool_size, n_test=config.test_size, random_state=config.data_seed
        )
    if config.data == "digits":
        data = datasets.load_digits_images(random_state=config.data_seed)
    else:
        if not os.path.isdir(config.data):
            raise InvalidParameterError(
                f"data: {config.data!r} is neither 'fashion-mnist', 'digits' nor a folder"
            )
        data = datasets.load_image_folder(config.data, random_state=config.data_seed)
    for split, name in (("train", "pool_size"), ("test", "test_size")):
        n, y = getattr(config, name), data[f"y_{split}"]
        if n is not None and n < len(y):
            keep = _stratified_subsample(y, n, config.data_seed, name)
            data[f"X_{split}"], data[f"y_{split}"] = data[f"X_{split}"][keep], y[keep]
    return data


def _stratified_subsample(y, n, seed, name):
    """Sorted indices of a seeded, class-stratified sample of ``n`` of the labels ``y``."""
    try:
        keep, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y,
                                   random_state=seed)
    except ValueError as exc:  # fewer than one image per class, or a class of one image
        raise InvalidParameterError(f"{name}={n}: cannot subsample per class ({exc})") from None
    return np.sort(keep)
