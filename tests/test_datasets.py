"""Dataset readers (Cityscapes, ADE20K, VOC, folder) on small sets written at test time, and bad data.

Every bad-data case is an InputError naming the file (exit code 2 from danet-eval), except an
image without a label, which is a documented skip: counted, listed and reported.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from danet_deploy.data.datasets import (
    IGNORE,
    match_classes,
    open_dataset,
    parse_data_spec,
    read_label_file,
)
from danet_deploy.data.scene_layouts import write_scene_dataset
from danet_deploy.data.scenes import SceneDataset
from danet_deploy.errors import ConfigError, InputError
from danet_deploy.model.registry import DEMO_CLASSES

SIZE = (32, 64)


def _scene_labels(count: int) -> list[np.ndarray]:
    return [label for _, label in SceneDataset("val", size=SIZE, count=count)]


def _as_model_labels(data, demo=DEMO_CLASSES):
    match = match_classes(list(demo), data)
    return [match.apply(label) for _, _, label in data.pairs()], match


@pytest.mark.parametrize("train_ids", [False, True])
def test_cityscapes_layout_reads_back_the_scene_labels(tmp_path, train_ids):
    write_scene_dataset("cityscapes", tmp_path, count=2, size=SIZE, train_ids=train_ids)
    data = open_dataset(f"cityscapes:{tmp_path}")
    assert data.split == "val" and len(data) == 2 and not data.skipped
    labels, match = _as_model_labels(data)
    assert match.evaluated == tuple(range(8)) and "terrain" in match.dataset_only and not match.model_only
    for got, want in zip(labels, _scene_labels(2)):
        np.testing.assert_array_equal(got, want)


def test_cityscapes_label_ids_use_the_official_table(tmp_path):
    write_scene_dataset("cityscapes", tmp_path, count=1, size=SIZE)
    data = open_dataset(f"cityscapes:{tmp_path}")
    raw = read_label_file(data.samples[0].label)
    train = data.read_label(data.samples[0])
    from cityscapesscripts.helpers.labels import id2label

    for value in np.unique(raw):
        expected = id2label[int(value)].trainId
        expected = IGNORE if expected in (255, -1) else expected
        assert set(np.unique(train[raw == value])) == {expected}


def test_ade20k_reduces_the_zero_label(tmp_path):
    write_scene_dataset("ade20k", tmp_path, count=2, size=SIZE)
    data = open_dataset(f"ade20k:{tmp_path}", split="val")
    assert data.split == "validation" and data.reduce_zero_label
    sample = data.samples[0]
    raw, label = read_label_file(sample.label), data.read_label(sample)
    assert (label[raw == 0] == IGNORE).all()
    assert (label[raw > 0] == raw[raw > 0] - 1).all()
    labels, match = _as_model_labels(data)
    assert "vegetation" in match.model_only  # ADE20K has tree/plant/grass, not "vegetation"
    for got, want in zip(labels, _scene_labels(2)):
        shared = np.isin(want, match.evaluated)
        np.testing.assert_array_equal(got[shared], want[shared])


def test_voc_reads_palette_labels_and_the_split_file(tmp_path):
    write_scene_dataset("voc", tmp_path, count=2, size=SIZE)
    data = open_dataset(f"voc:{tmp_path}")
    assert len(data) == 2
    with Image.open(data.samples[0].label) as img:
        assert img.mode == "P"
    labels, _ = _as_model_labels(data)
    car = DEMO_CLASSES.index("car")
    for got, want in zip(labels, _scene_labels(2)):
        assert ((got == car) == (want == car)).all()


def test_folder_layout_pairs_by_stem(tmp_path):
    write_scene_dataset("folder", tmp_path, count=2, size=SIZE)
    data = open_dataset(f"folder:{tmp_path / 'images'},{tmp_path / 'labels'}")
    labels, match = _as_model_labels(data)
    assert match.identity
    for got, want in zip(labels, _scene_labels(2)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("spec", ["cityscapes", "nope:/x", "folder:/only-one", "cityscapes:", ""])
def test_bad_specs_name_the_accepted_forms(spec):
    with pytest.raises(ConfigError, match="folder:IMAGES,LABELS"):
        parse_data_spec(spec)


# -- bad data: each an error naming the file, or a counted skip ----------------------------------------------
@pytest.fixture
def folder_set(tmp_path):
    write_scene_dataset("folder", tmp_path, count=2, size=SIZE)
    return tmp_path, f"folder:{tmp_path / 'images'},{tmp_path / 'labels'}"


def _first_label(root):
    return min((root / "labels").iterdir())


def _read_all(spec):
    data = open_dataset(spec)
    match_classes(list(DEMO_CLASSES), data)
    return list(data.pairs())


def test_a_label_of_another_size_names_both_files(folder_set):
    root, spec = folder_set
    path = _first_label(root)
    Image.fromarray(np.zeros((SIZE[0], SIZE[1] + 1), np.uint8)).save(path)
    with pytest.raises(InputError, match=f"label {path}.*its image .*must have their image's size"):
        _read_all(spec)


def test_label_values_beyond_the_classes_are_refused(folder_set):
    root, spec = folder_set
    path = _first_label(root)
    Image.fromarray(np.full(SIZE, 9, np.uint8)).save(path)
    with pytest.raises(InputError, match=f"label {path} holds values 9 beyond the 8"):
        _read_all(spec)


def test_cityscapes_label_ids_outside_the_table_are_refused(tmp_path):
    write_scene_dataset("cityscapes", tmp_path, count=1, size=SIZE)
    path = next((tmp_path / "gtFine").rglob("*_labelIds.png"))
    Image.fromarray(np.full(SIZE, 200, np.uint8)).save(path)
    with pytest.raises(InputError, match=f"label {path} holds values 200 .*label table does not know"):
        _read_all(f"cityscapes:{tmp_path}")


def test_an_image_without_a_label_is_skipped_counted_and_listed(folder_set):
    root, spec = folder_set
    path = _first_label(root)
    path.unlink()
    data = open_dataset(spec)
    assert len(data) == 2 and len(data.labelled()) == 1
    assert data.skipped == [(str(root / "images" / f"{path.stem}.png"), "no label file")]
    assert data.describe()["skipped"][0]["reason"] == "no label file"


def test_no_label_at_all_is_an_error(folder_set):
    root, spec = folder_set
    for p in (root / "labels").iterdir():
        p.unlink()
    with pytest.raises(InputError, match="none of its 2 images has a label file"):
        open_dataset(spec)


def test_an_empty_split_is_an_error_naming_where_it_looked(tmp_path):
    write_scene_dataset("cityscapes", tmp_path, count=1, size=SIZE)
    (tmp_path / "leftImg8bit" / "test").mkdir()
    with pytest.raises(InputError, match="split 'test' holds no images .*leftImg8bit/test"):
        open_dataset(f"cityscapes:{tmp_path}", split="test")
    with pytest.raises(InputError, match="is not a folder"):
        open_dataset(f"cityscapes:{tmp_path}", split="train")


@pytest.mark.parametrize("which", ["label", "image"])
def test_a_corrupt_png_is_an_error_naming_the_file(folder_set, which):
    root, spec = folder_set
    path = _first_label(root) if which == "label" else min((root / "images").iterdir())
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(InputError, match=str(path)):
        _read_all(spec)


def test_a_16_bit_label_is_refused(folder_set):
    root, spec = folder_set
    path = _first_label(root)
    Image.fromarray(np.zeros(SIZE, np.uint16)).save(path)
    with pytest.raises(InputError, match=f"label {path} is a I;16 .*8-bit"):
        _read_all(spec)


def test_a_palette_less_voc_label_is_refused(tmp_path):
    write_scene_dataset("voc", tmp_path, count=1, size=SIZE)
    path = next((tmp_path / "VOCdevkit").rglob("SegmentationClass/*.png"))
    with Image.open(path) as img:
        img.convert("RGB").save(path)
    with pytest.raises(InputError, match=f"label {path} is a RGB image, not a palette .*SegmentationClass"):
        _read_all(f"voc:{tmp_path}")


def test_a_grey_index_voc_label_is_read_like_a_palette_one(tmp_path):
    write_scene_dataset("voc", tmp_path, count=1, size=SIZE)
    path = next((tmp_path / "VOCdevkit").rglob("SegmentationClass/*.png"))
    with Image.open(path) as img:
        values = np.asarray(img)
    Image.fromarray(values, mode="L").save(path)
    data = open_dataset(f"voc:{tmp_path}")
    np.testing.assert_array_equal(data.read_label(data.samples[0]), values)


def test_mixed_cityscapes_label_kinds_are_refused(tmp_path):
    write_scene_dataset("cityscapes", tmp_path, count=2, size=SIZE)
    first = min((tmp_path / "gtFine").rglob("*_labelIds.png"))
    first.rename(first.with_name(first.name.replace("_labelIds", "_labelTrainIds")))
    with pytest.raises(InputError, match="mixes"):
        open_dataset(f"cityscapes:{tmp_path}")


def test_no_shared_class_is_refused(tmp_path):
    write_scene_dataset("cityscapes", tmp_path, count=1, size=SIZE)
    data = open_dataset(f"cityscapes:{tmp_path}")
    with pytest.raises(ConfigError, match="share no name"):
        match_classes(["cat", "dog"], data)


def test_limit_takes_the_first_images(tmp_path):
    write_scene_dataset("cityscapes", tmp_path, count=3, size=SIZE)
    assert len(open_dataset(f"cityscapes:{tmp_path}", limit=2)) == 2
    with pytest.raises(ConfigError):
        open_dataset(f"cityscapes:{tmp_path}", limit=0)


# -- the same --data spec feeds the accuracy budget's validation and the calibration set ------------------------
def test_budget_validation_from_a_dataset_matches_classes_and_resizes_labels(tmp_path):
    from danet_deploy.data.validation import dataset_validation
    from danet_deploy.model import get_config

    write_scene_dataset("cityscapes", tmp_path, count=2, size=SIZE)
    config = get_config("danet_demo")
    tensors, labels, evaluated, desc = dataset_validation(
        f"cityscapes:{tmp_path}", 2, (16, 32), config.preprocessing.to_dict(), config.class_names
    )
    assert tensors.shape == (2, 3, 16, 32) and labels.shape == (2, 16, 32) and evaluated == tuple(range(8))
    assert desc["split"] == "val" and desc["classes"]["matched"] == 8
    want = _scene_labels(1)[0][1::2, 1::2]  # nearest neighbour at half size: pixel centres
    np.testing.assert_array_equal(labels[0], want)


def test_calibration_reads_a_datasets_train_split_images_only(tmp_path):
    from danet_deploy.data.calibration import load_calibration
    from danet_deploy.model import get_config

    write_scene_dataset("cityscapes", tmp_path, split="train", count=3, size=SIZE)
    for label in (tmp_path / "gtFine").rglob("*.png"):
        label.unlink()  # calibration needs no labels
    calib = load_calibration(
        f"cityscapes:{tmp_path}",
        count=2,
        size=SIZE,
        preprocessing=get_config("danet_demo").preprocessing.to_dict(),
        log=lambda _: None,
        cache_dir=False,
    )
    assert len(calib) == 2 and all(name.startswith("leftImg8bit/train/") for name in calib.files)
    from danet_deploy.errors import CalibrationError

    with pytest.raises(CalibrationError, match="has 3 image"):
        load_calibration(
            f"cityscapes:{tmp_path}", count=5, size=SIZE, preprocessing={}, log=lambda _: None, cache_dir=False
        )


def test_any_data_spec_text_parses_or_is_a_config_error():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=200, deadline=None)
    @given(
        st.one_of(
            st.text(max_size=40),
            st.builds(
                lambda a, b: f"{a}:{b}",
                st.sampled_from(["cityscapes", "ade20k", "voc", "folder", "CITYSCAPES", "x"]),
                st.text(max_size=30),
            ),
        )
    )
    def check(text):
        try:
            spec = parse_data_spec(text)
        except ConfigError:
            return
        assert spec.layout in ("cityscapes", "ade20k", "voc", "folder") and str(spec.root)

    check()


def test_without_cityscapesscripts_label_ids_name_the_extra(tmp_path, monkeypatch):
    import sys

    from danet_deploy.errors import MissingExtraError
    from danet_deploy.targets.registry import Requirement

    write_scene_dataset("cityscapes", tmp_path, count=1, size=SIZE)
    monkeypatch.setitem(sys.modules, "cityscapesscripts.helpers.labels", None)  # as if not installed
    monkeypatch.setattr(Requirement, "installed", lambda self: False)
    with pytest.raises(MissingExtraError, match=r"danet-deploy\[datasets\]"):
        open_dataset(f"cityscapes:{tmp_path}")
