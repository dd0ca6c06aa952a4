"""``skpeal label``: arguments and one-line errors (the server itself: test_browser.py)."""

import pytest

from skpeal.cli import _parser, main


def test_label_arguments_and_defaults():
    args = _parser().parse_args(["label", "photos", "--classes", "cat", "dog"])
    assert args.command == "label" and args.images == "photos"
    assert args.classes == ["cat", "dog"] and args.host == "127.0.0.1" and args.port == 8000
    assert args.project is None and args.batch_size == 10


@pytest.mark.parametrize("extra, match", [
    ([], "a new project needs its class names"),
    (["--classes", "cat"], "at least two class names"),
    (["--classes", "cat", "cat"], "listed twice"),
])
def test_bad_label_arguments_give_one_clear_line(tmp_path, capsys, image_folder, extra, match):
    folder, _ = image_folder
    assert main(["label", str(folder), "--model", "skpeal-tiny", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("skpeal: error:") and match in err[0], err
    assert not (folder / ".skpeal").exists()  # nothing was created


def test_missing_image_folder(tmp_path, capsys):
    assert main(["label", str(tmp_path / "nope"), "--classes", "a", "b"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()
