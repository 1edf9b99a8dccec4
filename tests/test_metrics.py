"""Metrics against hand-computed confusion matrices and IoUs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from danet_deploy.data.metrics import SegmentationMetrics, confusion_matrix
from danet_deploy.errors import InputError


def test_confusion_matrix_hand_computed():
    label = np.array([[0, 0, 1], [1, 2, 2]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    expected = np.array([[1, 1, 0],
                         [0, 2, 0],
                         [1, 0, 1]])
    np.testing.assert_array_equal(confusion_matrix(pred, label, 3), expected)


def test_ignore_index_is_skipped_even_with_out_of_range_prediction_values():
    label = np.array([255, 0, 1, 255])
    pred = np.array([1, 0, 0, 1])
    np.testing.assert_array_equal(confusion_matrix(pred, label, 2), [[1, 0], [1, 0]])


def test_iou_miou_accuracy_hand_computed():
    m = SegmentationMetrics(3, ("a", "b", "c"))
    m.update(np.array([[0, 1, 1], [1, 2, 0]]), np.array([[0, 0, 1], [1, 2, 2]]))
    # class 0: tp 1, fp 1, fn 1 -> 1/3; class 1: tp 2, fp 1, fn 0 -> 2/3; class 2: tp 1, fn 1 -> 1/2
    np.testing.assert_allclose(m.iou(), [1 / 3, 2 / 3, 1 / 2])
    assert math.isclose(m.miou(), (1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert math.isclose(m.pixel_accuracy(), 4 / 6)
    d = m.to_dict()
    assert d["images"] == 1 and d["pixels"] == 6
    assert set(d["per_class_iou"]) == {"a", "b", "c"}


def test_absent_class_is_nan_and_excluded_from_miou():
    m = SegmentationMetrics(3)
    m.update(np.array([0, 1]), np.array([0, 1]))
    iou = m.iou()
    assert iou[0] == 1.0 and iou[1] == 1.0 and np.isnan(iou[2])
    assert m.miou() == 1.0
    assert m.to_dict()["per_class_iou"]["class_2"] is None


def test_class_only_predicted_counts_as_zero():
    m = SegmentationMetrics(2)
    m.update(np.array([1, 1]), np.array([0, 0]))
    np.testing.assert_array_equal(m.iou(), [0.0, 0.0])
    assert m.miou() == 0.0


def test_accumulates_over_updates_and_batches():
    m = SegmentationMetrics(2)
    m.update(np.zeros((2, 4, 4), np.uint8), np.zeros((2, 4, 4), np.uint8))
    m.update(np.ones((4, 4), np.uint8), np.zeros((4, 4), np.uint8))
    assert m.images == 3
    assert m.confusion.tolist() == [[32, 16], [0, 0]]


def test_empty_metrics_are_nan():
    m = SegmentationMetrics(2)
    assert math.isnan(m.miou()) and math.isnan(m.pixel_accuracy())


@pytest.mark.parametrize("pred,label", [
    (np.zeros((2, 2)), np.zeros((2, 3))),
    (np.zeros(2), np.array([0, 5])),
    (np.array([0, 3]), np.zeros(2)),
])
def test_bad_inputs_raise(pred, label):
    with pytest.raises(InputError):
        confusion_matrix(pred, label, 2)
