"""A restarted ``skpeal label`` serves its pending batch before the model is loaded."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["skpeal.labeling", "skpeal.labeling.store",
                                    "skpeal.labeling.app"])
def test_store_and_web_app_import_without_torch(module):
    code = (f"import sys, {module}; bad = [m for m in ('torch', 'open_clip') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lazy_names_of_skpeal_labeling():
    import skpeal.labeling as lab
    from skpeal.labeling.session import LabelingSession
    from skpeal.labeling.store import LabelStore

    assert lab.LabelingSession is LabelingSession
    assert lab.LabelStore is LabelStore
    assert set(lab.__all__) <= set(dir(lab))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lab.nope  # noqa: B018
