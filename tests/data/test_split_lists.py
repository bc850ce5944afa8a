"""List-file splits (detseg.data.split): a .txt/.csv of image names picks those samples, e.g. the
raccoon author's ``data/test_labels.csv``; a name matching nothing is an error naming the file."""

from pathlib import Path

import pytest

from detseg.data import build_dataset
from detseg.data.split import SplitError, check_split, sample_name, split_range
from tests.data.test_split_ranges import names, write_voc


def test_csv_with_header_and_repeated_rows_picks_the_named_images(tmp_path):
    write_voc(tmp_path / "data", ["a", "b", "c", "d"])
    lst = tmp_path / "test_labels.csv"
    lst.write_text("filename,width,height,class\nd.jpg,30,20,cat\nb.jpg,30,20,cat\nd.jpg,30,20,dog\n")
    ds = build_dataset(tmp_path / "data", split=str(lst))
    assert names(ds) == ["b.jpg", "d.jpg"]  # the data's order, each once


def test_txt_list_by_stem_and_comments(tmp_path):
    write_voc(tmp_path / "data", ["a", "b", "c"])
    lst = tmp_path / "val.txt"
    lst.write_text("# held out\nc\n\na.jpg\n")
    assert names(build_dataset(tmp_path / "data", split=str(lst))) == ["a.jpg", "c.jpg"]


def test_unknown_names_and_missing_file_are_clear_errors(tmp_path):
    write_voc(tmp_path / "data", ["a", "b"])
    lst = tmp_path / "val.txt"
    lst.write_text("a\nzz\n")
    with pytest.raises(SplitError, match=r"val\.txt.*1 listed name.*zz"):
        build_dataset(tmp_path / "data", split=str(lst))
    with pytest.raises(SplitError, match="val_split.*does not exist"):
        check_split(str(tmp_path / "nope.csv"), "val_split")
    with pytest.raises(ValueError, match="no index ranges or lists"):
        build_dataset("shapes:n=4", split=str(lst))


def test_list_split_is_not_a_range_and_names_match_by_stem():
    assert split_range("lists/val.csv") is None
    assert sample_name("images/raccoon-5.jpg") == sample_name("raccoon-5") == "raccoon-5"
    assert sample_name("im.00001") == "im.00001"


RACCOON = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "raccoon"


@pytest.mark.skipif(not RACCOON.is_dir(), reason="../shared/datasets/raccoon is absent")
def test_raccoon_author_split_is_160_40():
    train = build_dataset(RACCOON, split=str(RACCOON / "data" / "train_labels.csv"))
    val = build_dataset(RACCOON, split=str(RACCOON / "data" / "test_labels.csv"))
    assert (len(train), len(val)) == (160, 40) and not set(train.files) & set(val.files)


def test_malformed_list_files_are_clear_errors(tmp_path):
    write_voc(tmp_path / "data", ["a", "b"])
    cases = {"empty.txt": (b"", "the list names no samples"),
             "comments.txt": (b"# nothing but a comment\n\n", "the list names no samples"),
             "header.csv": (b"filename,width\n", "the list names no samples"),
             "binary.txt": (b"\xff\xfe\x00\x81junk", "cannot read the split list"),
             "folder.txt": (None, "cannot read the split list")}
    for name, (data, message) in cases.items():
        path = tmp_path / name
        if data is None:
            path.mkdir()
        else:
            path.write_bytes(data)
        with pytest.raises(SplitError, match=rf"{name}: .*{message}"):
            build_dataset(tmp_path / "data", split=str(path))
