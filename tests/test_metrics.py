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
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
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


@pytest.mark.parametrize(
    "pred,label",
    [
        (np.zeros((2, 2)), np.zeros((2, 3))),
        (np.zeros(2), np.array([0, 5])),
        (np.array([0, 3]), np.zeros(2)),
    ],
)
def test_bad_inputs_raise(pred, label):
    with pytest.raises(InputError):
        confusion_matrix(pred, label, 2)


# -- mmsegmentation's IoUMetric, transcribed from mmseg/evaluation/metrics/iou_metric.py (1.2.2) --------------
def _mmseg_intersect_and_union(pred, label, num_classes, ignore_index=255):
    import torch

    pred, label = torch.from_numpy(np.asarray(pred, np.int64)), torch.from_numpy(np.asarray(label, np.int64))
    mask = label != ignore_index
    pred, label = pred[mask], label[mask]
    intersect = pred[pred == label]

    def hist(t):
        return torch.histc(t.float(), bins=num_classes, min=0, max=num_classes - 1)

    area_intersect, area_pred, area_label = hist(intersect), hist(pred), hist(label)
    return area_intersect, area_pred + area_label - area_intersect, area_pred, area_label


def _mmseg_metrics(pairs, num_classes):
    results = [_mmseg_intersect_and_union(p, t, num_classes) for p, t in pairs]
    total = [sum(r[k] for r in results).numpy().astype(np.float64) for k in range(4)]  # counts: exact
    intersect, union, _, label = total
    with np.errstate(divide="ignore", invalid="ignore"):
        iou, acc = intersect / union, intersect / label
    return {
        "aAcc": intersect.sum() / label.sum(),
        "IoU": iou,
        "Acc": acc,
        "mIoU": np.nanmean(iou),
        "mAcc": np.nanmean(acc),
    }


def test_metrics_equal_mmseg_iou_metric_on_a_hand_computed_case(torch):
    # two images; class 3 never appears in labels (Acc NaN) but is predicted (IoU 0); 255 ignored
    pairs = [
        (np.array([[0, 1, 1], [3, 2, 0]]), np.array([[0, 0, 1], [255, 2, 2]])),
        (np.array([[1, 1], [3, 0]]), np.array([[1, 1], [1, 255]])),
    ]
    m = SegmentationMetrics(4)
    for p, t in pairs:
        m.update(p, t)
    # by hand, over the 8 pixels not ignored: intersect [1, 3, 1, 0], predicted [2, 4, 1, 1],
    # labelled [2, 4, 2, 0] -> union [3, 5, 2, 1]
    intersect, union, pred_area, label_area = m.areas()
    assert intersect.tolist() == [1, 3, 1, 0] and pred_area.tolist() == [2, 4, 1, 1]
    assert label_area.tolist() == [2, 4, 2, 0] and union.tolist() == [3, 5, 2, 1]
    np.testing.assert_allclose(m.iou(), [1 / 3, 3 / 5, 1 / 2, 0])
    assert math.isclose(m.pixel_accuracy(), 5 / 8) and math.isclose(m.macc(), (1 / 2 + 3 / 4 + 1 / 2) / 3)
    ref = _mmseg_metrics(pairs, 4)
    np.testing.assert_allclose(m.iou(), ref["IoU"])
    np.testing.assert_allclose(m.acc(), ref["Acc"])
    assert math.isclose(m.miou(), ref["mIoU"]) and math.isclose(m.macc(), ref["mAcc"])
    assert math.isclose(m.pixel_accuracy(), ref["aAcc"])
    assert m.iou()[3] == 0.0 and math.isnan(m.acc()[3])


def test_metrics_equal_mmseg_iou_metric_on_random_sets(torch):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=40, deadline=None)
    @given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**32 - 1))
    def check(classes, images, seed):
        rng = np.random.default_rng(seed)
        pairs = []
        for _ in range(images):
            shape = tuple(rng.integers(1, 9, 2))
            label = rng.integers(0, classes, shape)
            label[rng.random(shape) < 0.2] = 255
            pairs.append((rng.integers(0, classes, shape), label))
        m = SegmentationMetrics(classes)
        for p, t in pairs:
            m.update(p, t)
        ref = _mmseg_metrics(pairs, classes)
        np.testing.assert_allclose(m.iou(), ref["IoU"], equal_nan=True)
        np.testing.assert_allclose(m.acc(), ref["Acc"], equal_nan=True)
        if np.isfinite(ref["IoU"]).any():
            assert math.isclose(m.miou(), ref["mIoU"], rel_tol=1e-12)
        if np.isfinite(ref["aAcc"]):
            assert math.isclose(m.pixel_accuracy(), ref["aAcc"], rel_tol=1e-12)

    check()


def test_evaluated_classes_limit_the_means_but_not_the_errors():
    m = SegmentationMetrics(3, evaluated=(0, 1))
    m.update(np.array([2, 1, 0]), np.array([0, 1, 0]))  # class 2 only predicted: an error for class 0
    assert math.isclose(m.miou(), (0.5 + 1.0) / 2)
    assert set(m.to_dict()["per_class_iou"]) == {"class_0", "class_1"}
