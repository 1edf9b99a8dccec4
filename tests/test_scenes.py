"""The scene generator: deterministic, disjoint splits, correct types, every class appears."""

from __future__ import annotations

import numpy as np
import pytest

from danet_deploy.data.scenes import SPLITS, SceneDataset, generate_scene
from danet_deploy.errors import ConfigError
from danet_deploy.model.registry import DEMO_CLASSES


def test_same_seed_same_scene_and_different_seeds_differ():
    a_img, a_lab = generate_scene(7, 96, 128)
    b_img, b_lab = generate_scene(7, 96, 128)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    c_img, _ = generate_scene(8, 96, 128)
    assert not np.array_equal(a_img, c_img)


def test_shapes_and_dtypes():
    image, label = generate_scene(3, 64, 80)
    assert image.shape == (64, 80, 3) and image.dtype == np.uint8
    assert label.shape == (64, 80) and label.dtype == np.uint8
    assert label.max() < len(DEMO_CLASSES)


def test_layout_is_resolution_independent():
    """The same seed gives the same scene at every size, which is what lets training use small crops."""
    _, small = generate_scene(11, 128, 128)
    _, large = generate_scene(11, 256, 256)
    assert (large[::2, ::2] == small).mean() > 0.9


def test_long_range_structure():
    labels = np.stack([generate_scene(s, 64, 64)[1] for s in range(8)])
    sky, road = DEMO_CLASSES.index("sky"), DEMO_CLASSES.index("road")
    assert (labels[:, :4] == sky).mean() > (labels[:, -4:] == sky).mean()
    assert (labels[:, -4:] == road).mean() > (labels[:, :4] == road).mean()


def test_all_classes_appear_across_a_few_scenes():
    seen = set()
    for seed in range(6):
        seen |= set(np.unique(generate_scene(seed, 256, 256)[1]).tolist())
    assert seen == set(range(len(DEMO_CLASSES)))


def test_splits_are_disjoint():
    names = list(SPLITS)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ra, rb = SPLITS[a], SPLITS[b]
            assert ra.stop <= rb.start or rb.stop <= ra.start, (a, b)


def test_dataset_indexing_and_errors():
    ds = SceneDataset("val", size=(48, 64), count=3)
    assert len(ds) == 3
    image, label = ds[1]
    np.testing.assert_array_equal(label, generate_scene(SPLITS["val"].start + 1, 48, 64)[1])
    assert image.shape == (48, 64, 3)
    assert len(list(ds)) == 3
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(ConfigError):
        SceneDataset("test")
    with pytest.raises(ConfigError):
        SceneDataset("calib", count=len(SPLITS["calib"]) + 1)


def test_crowd_adds_only_pedestrians_and_poles_to_the_same_scene():
    """``crowd=True`` draws from its own stream: the base scene is unchanged except where an extra
    pedestrian or pole is painted (or a nearer base object covers one)."""
    from danet_deploy.data.scenes import PERSON, POLE

    added = 0
    for seed in range(6):
        _base_img, base = generate_scene(seed, 128, 192)
        _crowd_img, crowd = generate_scene(seed, 128, 192, crowd=True)
        changed = base != crowd
        assert set(np.unique(crowd[changed]).tolist()) <= {PERSON, POLE}
        added += int(((crowd == PERSON) & changed).sum())
        np.testing.assert_array_equal(generate_scene(seed, 128, 192)[1], base)
    assert added > 0
