"""skpeal.experiment.load_data: seeded, class-stratified subsamples."""

import numpy as np
import pytest

from skpeal.experiment import ExperimentConfig, load_data


def test_digits_subsamples_are_stratified_and_seeded():
    cfg = ExperimentConfig(data="digits", pool_size=100, test_size=50, data_seed=3)
    data = load_data(cfg)
    assert len(data.y_train) == 100 and len(data.y_test) == 50
    counts = np.bincount(data.y_train, minlength=10)
    assert counts.max() - counts.min() <= 1  # 10 classes, 100 images: about 10 each
    again = load_data(cfg)
    np.testing.assert_array_equal(data.X_train, again.X_train)
    other = load_data(ExperimentConfig(data="digits", pool_size=100, data_seed=4))
    assert not np.array_equal(data.X_train, other.X_train)


def test_a_subsample_smaller_than_the_classes_is_refused():
    with pytest.raises(ValueError, match="pool_size=5"):
        load_data(ExperimentConfig(data="digits", pool_size=5))
