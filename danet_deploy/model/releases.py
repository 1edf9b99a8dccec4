"""Presets that reproduce the DANet checkpoints people can download, as data.

Each entry says what it reproduces, where the architecture facts come from, and the accuracy the
release is known for, so ``danet-export --list-models`` tells a user which file it belongs to.

* The official release (github.com/junfu1115/DANet, ``DANet101.pth.tar``) is evaluated by its own
  test script with ``--backbone resnet101 --os 8 --multi-grid --multi-dilation 4 8 16
  --no-deepstem``: a 7x7 stem, output stride 8 and layer4 blocks dilated 4/8/16 (stage dilation 4
  times the multi-grid 1/2/4), bilinear upsampling with ``align_corners=True``.
* mmsegmentation's DANet (``configs/_base_/models/danet_r50-d8.py``) is ResNetV1c
  (``stem_channels=64``: a deep stem 3->32->32->64), dilations (1, 1, 2, 4) with
  ``contract_dilation``, DAHead with ``channels=512, pam_channels=64`` and ``align_corners=False``;
  its Cityscapes 769x769 configs switch ``align_corners`` to True. Its data preprocessor uses
  mean (123.675, 116.28, 103.53) and std (58.395, 57.12, 57.375) on 0..255 RGB, which is the
  ImageNet mean/std on 0..1 used here.

Weights cannot tell a 512x1024 mmseg Cityscapes model from a 769x769 one (only ``align_corners``
differs); both presets exist. The config text mmsegmentation stores in a checkpoint's ``meta``
decides (:mod:`.mmseg_config`); without it the checkpoint inspector refuses and names both.

Each release also has its test protocol (:data:`danet_deploy.eval_protocol.RELEASE_PROTOCOLS`, in a
torch-free module so that ``danet-eval`` reads the same table): how its published accuracy was
measured, for an evaluator to reproduce.
"""

from __future__ import annotations

from ..eval_protocol import MMSEG_DEPTHS, MMSEG_PROTOCOLS, mmseg_preset

CITYSCAPES_CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

# mmsegmentation ADE20KDataset (reduce_zero_label: index 0 is "wall")
ADE20K_CLASSES = (
    "wall",
    "building",
    "sky",
    "floor",
    "tree",
    "ceiling",
    "road",
    "bed",
    "windowpane",
    "grass",
    "cabinet",
    "sidewalk",
    "person",
    "earth",
    "door",
    "table",
    "mountain",
    "plant",
    "curtain",
    "chair",
    "car",
    "water",
    "painting",
    "sofa",
    "shelf",
    "house",
    "sea",
    "mirror",
    "rug",
    "field",
    "armchair",
    "seat",
    "fence",
    "desk",
    "rock",
    "wardrobe",
    "lamp",
    "bathtub",
    "railing",
    "cushion",
    "base",
    "box",
    "column",
    "signboard",
    "chest of drawers",
    "counter",
    "sand",
    "sink",
    "skyscraper",
    "fireplace",
    "refrigerator",
    "grandstand",
    "path",
    "stairs",
    "runway",
    "case",
    "pool table",
    "pillow",
    "screen door",
    "stairway",
    "river",
    "bridge",
    "bookcase",
    "blind",
    "coffee table",
    "toilet",
    "flower",
    "book",
    "hill",
    "bench",
    "countertop",
    "stove",
    "palm",
    "kitchen island",
    "computer",
    "swivel chair",
    "boat",
    "bar",
    "arcade machine",
    "hovel",
    "bus",
    "towel",
    "light",
    "truck",
    "tower",
    "chandelier",
    "awning",
    "streetlight",
    "booth",
    "television receiver",
    "airplane",
    "dirt track",
    "apparel",
    "pole",
    "land",
    "bannister",
    "escalator",
    "ottoman",
    "bottle",
    "buffet",
    "poster",
    "stage",
    "van",
    "ship",
    "fountain",
    "conveyer belt",
    "canopy",
    "washer",
    "plaything",
    "swimming pool",
    "stool",
    "barrel",
    "basket",
    "waterfall",
    "tent",
    "bag",
    "minibike",
    "cradle",
    "oven",
    "ball",
    "food",
    "step",
    "tank",
    "trade name",
    "microwave",
    "pot",
    "animal",
    "bicycle",
    "lake",
    "dishwasher",
    "screen",
    "blanket",
    "sculpture",
    "hood",
    "sconce",
    "vase",
    "traffic light",
    "tray",
    "ashcan",
    "fan",
    "pier",
    "crt screen",
    "plate",
    "monitor",
    "bulletin board",
    "shower",
    "radiator",
    "glass",
    "clock",
    "flag",
)

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

# mmsegmentation's SegDataPreProcessor values (0..255 RGB), as 0..1 fractions
MMSEG_MEAN = (123.675 / 255, 116.28 / 255, 103.53 / 255)
MMSEG_STD = (58.395 / 255, 57.12 / 255, 57.375 / 255)

_MMSEG_ARCH = {"deep_stem": True, "stem_width": 32, "base_width": 64, "output_stride": 8}


def release_presets() -> dict[str, dict]:
    """Keyword arguments of :class:`~danet_deploy.model.registry.ModelConfig` per released configuration.

    mIoU figures: single-scale val, from the official README and mmsegmentation's
    ``configs/danet/README.md``; the two numbers of an mmseg entry are its two schedules.

    Plain dicts (no ModelConfig import) so the registry can build them without an import cycle.
    """
    presets: dict[str, dict] = {
        "danet_official_r101_cityscapes": dict(
            depth=101,
            output_stride=8,
            deep_stem=False,
            stem_width=64,
            base_width=64,
            multi_grid=(1, 2, 4),
            num_classes=19,
            class_names=CITYSCAPES_CLASSES,
            align_corners=True,
            description="official DANet release DANet101.pth.tar (junfu1115/DANet): ResNet-101, 7x7 stem, "
            "OS 8, multi-grid dilations 4/8/16, Cityscapes 19 classes; val mIoU 79.93 single-scale "
            "(repo README), 81.5 on the test set (paper)",
        ),
    }
    zoo = {  # dataset -> (classes, what, {depth: mIoU text}); align_corners: its test protocol's
        "cityscapes": (
            CITYSCAPES_CLASSES,
            "Cityscapes 512x1024 crops",
            {50: "78.74 (40k) / 79.34 (80k iters)", 101: "80.52 (40k) / 80.41 (80k iters)"},
        ),
        "cityscapes_769": (
            CITYSCAPES_CLASSES,
            "Cityscapes 769x769 crops, slide inference 769/513",
            {50: "78.88 (40k) / 79.27 (80k iters)", 101: "79.88 (40k) / 80.47 (80k iters)"},
        ),
        "ade20k": (
            ADE20K_CLASSES,
            "ADE20K 150 classes, 512x512 crops",
            {50: "41.66 (80k) / 42.45 (160k iters)", 101: "43.64 (80k) / 44.17 (160k iters)"},
        ),
        "voc12aug": (
            VOC_CLASSES,
            "Pascal VOC 2012 + aug, 21 classes, 512x512 crops",
            {50: "74.45 (20k) / 76.37 (40k iters)", 101: "76.02 (20k) / 76.51 (40k iters)"},
        ),
    }
    for dataset, (classes, what, miou) in zoo.items():
        align = MMSEG_PROTOCOLS[dataset].align_corners
        for depth in MMSEG_DEPTHS:
            presets[mmseg_preset(depth, dataset)] = dict(
                depth=depth,
                **_MMSEG_ARCH,
                num_classes=len(classes),
                class_names=classes,
                align_corners=align,
                mean=MMSEG_MEAN,
                std=MMSEG_STD,
                description=f"mmsegmentation DANet R-{depth}-D8, {what} (stem 3->32->32->64, "
                f"align_corners={align}); model zoo val mIoU {miou[depth]}",
            )
    return presets


#: The presets of each foreign checkpoint key layout whose conventions differ from the official
#: code's (mmsegmentation: ``align_corners=False``, a 3->32->32->64 stem, contracted dilations).
#: A checkpoint of one layout is only ever built as a preset of its own; the official layout's are
#: every preset not listed here (its release, and this project's presets, which keep the official
#: code's defaults: deep stem 3->64->64->128, output stride 8, ``align_corners=True``).
LAYOUT_PRESETS: dict[str, tuple[str, ...]] = {
    "mmsegmentation": tuple(mmseg_preset(depth, dataset) for dataset in MMSEG_PROTOCOLS for depth in MMSEG_DEPTHS),
}
#: The key layouts whose conventions are known (see :data:`LAYOUT_PRESETS`).
FOREIGN_LAYOUTS = ("official DANet", "mmsegmentation")

#: Class names by class count, for a checkpoint whose count is that of one known dataset.
DATASET_CLASSES: dict[int, tuple[str, tuple[str, ...]]] = {
    len(CITYSCAPES_CLASSES): ("Cityscapes", CITYSCAPES_CLASSES),
    len(ADE20K_CLASSES): ("ADE20K", ADE20K_CLASSES),
    len(VOC_CLASSES): ("Pascal VOC", VOC_CLASSES),
}
