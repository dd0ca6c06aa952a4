"""LabelingSession's parameters and exports: bad values are refused, naming the fix."""

import pytest
from sklearn.linear_model import LinearRegression

from skpeal.labeling import LabelingSession

from .conftest import CLASSES, tiny_estimator


@pytest.mark.parametrize("lease", [-5, 0, float("nan"), float("inf"), "600", True])
def test_lease_seconds_must_be_positive(tmp_path, image_folder, lease):
    folder, _ = image_folder
    with pytest.raises(ValueError, match="lease_seconds must be a positive number"):
        LabelingSession(tmp_path / "p", folder, CLASSES, estimator=tiny_estimator(),
                        lease_seconds=lease)
    assert not (tmp_path / "p").exists()


def test_the_estimator_must_be_a_probabilistic_classifier(tmp_path, image_folder):
    folder, _ = image_folder
    with pytest.raises(ValueError, match="classifier with predict_proba.*LinearRegression"):
        LabelingSession(tmp_path / "p", folder, CLASSES, estimator=LinearRegression())


def test_simulate_refuses_an_oracle_answer_outside_the_classes(session_factory):
    s = session_factory(batch_size=3)
    with pytest.raises(ValueError, match="oracle answered 'purple' for image"):
        s.simulate(lambda image_id, path: "purple", 1)
    assert s.store.history() == []


def test_exports_into_a_missing_folder_are_refused(session_factory, tmp_path):
    s = session_factory(batch_size=3).prepare()
    missing = tmp_path / "nope" / "deeper"
    with pytest.raises(ValueError, match="export_csv: the folder .*nope/deeper does not exist"):
        s.export_csv(missing / "labels.csv")
    with pytest.raises(ValueError, match="export_label_studio: the folder .*nope"):
        s.export_label_studio(missing / "tasks.json")
    with pytest.raises(ValueError, match="export_folder: the folder .*nope"):
        s.export_folder(missing / "out")
    assert not (tmp_path / "nope").exists()
    s.export_csv(tmp_path / "labels.csv")  # an existing folder is fine
    assert (tmp_path / "labels.csv").exists()
