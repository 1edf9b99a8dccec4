import numpy as np
import pytest
from PIL import Image

from danet_deploy.data.calibration import default_cache_dir, load_calibration
from danet_deploy.errors import CalibrationError
from danet_deploy.model import get_config
from danet_deploy.runtime.preprocess import preprocess

PRE = get_config("danet_demo").preprocessing.to_dict()
SIZE = (24, 32)


def _quiet(_msg):
    pass


def _rgb(seed, h=20, w=28):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture()
def folder(tmp_path):
    """6 RGB images (one in a subfolder), one grayscale, one RGBA, one corrupt, one truncated."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    for i in range(5):
        Image.fromarray(_rgb(i)).save(root / f"img{i}.png")
    Image.fromarray(_rgb(5)).save(root / "sub" / "img5.jpg", quality=95)
    Image.fromarray(_rgb(6)[..., 0]).save(root / "gray.png")
    Image.fromarray(np.dstack([_rgb(7), np.full((20, 28), 128, np.uint8)])).save(root / "rgba.png")
    (root / "broken.jpg").write_bytes(b"this is not a jpeg")
    data = (root / "img0.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "notes.txt").write_text("ignored: not an image suffix")
    return root


def test_folder_source_skips_corrupt_and_converts_channels(folder, tmp_path):
    logs = []
    calib = load_calibration(folder, count=8, size=SIZE, preprocessing=PRE, log=logs.append, cache_dir=tmp_path / "c")
    assert calib.tensors.shape == (8, 3, *SIZE) and calib.tensors.dtype == np.float32
    assert sorted(s["file"] for s in calib.skipped) == ["broken.jpg", "truncated.png"]
    assert sorted(calib.converted) == ["gray.png", "rgba.png"]
    assert calib.files == sorted(calib.files)  # deterministic, sorted by relative path
    assert "sub/img5.jpg" in calib.files
    assert any("skipped 2" in line for line in logs)
    # the runtime's own preprocessing, one code path: gray is replicated, alpha dropped
    gray = np.repeat(_rgb(6)[..., :1], 3, axis=2)
    np.testing.assert_array_equal(calib.tensors[calib.files.index("gray.png")], preprocess([gray], PRE, SIZE)[0])
    np.testing.assert_array_equal(calib.tensors[calib.files.index("rgba.png")], preprocess([_rgb(7)], PRE, SIZE)[0])
    info = calib.describe()
    assert info["count"] == 8 and info["skipped"] == 2 and info["converted_to_rgb"] == 2 and info["hash"] == calib.hash


def test_subset_is_deterministic_and_spread(folder, tmp_path):
    a = load_calibration(folder, count=3, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False)
    b = load_calibration(folder, count=3, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False)
    assert a.files == b.files and a.hash == b.hash
    np.testing.assert_array_equal(a.tensors, b.tensors)
    everything = load_calibration(folder, count=8, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False).files
    assert a.files[0] == everything[0] and a.files[-1] == everything[-1]  # spread over the whole folder


def test_hash_depends_on_content_size_count_and_preprocessing(folder):
    first = load_calibration(folder, count=4, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False)
    base = first.hash
    assert load_calibration(folder, count=5, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False).hash != base
    assert load_calibration(folder, count=4, size=(32, 32), preprocessing=PRE, log=_quiet, cache_dir=False).hash != base
    other = dict(PRE, mean=[0.5, 0.5, 0.5])
    assert load_calibration(folder, count=4, size=SIZE, preprocessing=other, log=_quiet, cache_dir=False).hash != base
    used = next(name for name in first.files if name.startswith("img"))
    Image.fromarray(_rgb(99)).save(folder / used)  # same name, new content
    assert load_calibration(folder, count=4, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False).hash != base


def test_cache_reuse_and_recovery(folder, tmp_path):
    cache = tmp_path / "cache"
    first = load_calibration(folder, count=4, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=cache)
    assert not first.from_cache and (cache / first.hash / "tensors.npy").is_file()
    second = load_calibration(folder, count=4, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=cache)
    assert second.from_cache and second.hash == first.hash and second.files == first.files
    np.testing.assert_array_equal(second.tensors, first.tensors)
    path = second.statistics_path("ort-ranges", {"method": "minmax"})
    assert path.parent == cache / first.hash
    assert path != second.statistics_path("ort-ranges", {"method": "entropy"})
    (cache / first.hash / "tensors.npy").write_bytes(b"garbage")  # a damaged cache is a miss, not an error
    third = load_calibration(folder, count=4, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=cache)
    assert not third.from_cache
    np.testing.assert_array_equal(third.tensors, first.tensors)


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DANET_DEPLOY_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "calib"


def test_folder_errors_name_the_folder_and_the_fix(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="holds no images.*--calib generated"):
        load_calibration(empty, count=2, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(CalibrationError, match=r"bad has no readable image: 1 file\(s\) could not be decoded") as info:
        load_calibration(bad, count=1, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False)
    assert "--calib-count" not in str(info.value)  # no count can help an empty folder
    few = tmp_path / "few"
    few.mkdir()
    Image.fromarray(_rgb(1)).save(few / "a.png")
    with pytest.raises(CalibrationError, match="1 usable.*--calib-count 1"):
        load_calibration(few, count=4, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False)
    with pytest.raises(CalibrationError, match="does not exist.*--calib-dir"):
        load_calibration(tmp_path / "nowhere", count=1, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False)


def test_npz_source_validated(tmp_path):
    good = np.random.default_rng(0).standard_normal((5, 3, *SIZE)).astype(np.float32)
    path = tmp_path / "calib.npz"
    np.savez(path, input=good)
    calib = load_calibration(path, count=5, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False)
    np.testing.assert_array_equal(calib.tensors, good)
    assert len(load_calibration(path, count=2, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False)) == 2
    with pytest.raises(CalibrationError, match="holds 5 tensors.*--calib-count 5"):
        load_calibration(path, count=6, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False)
    with pytest.raises(CalibrationError, match=r"expected \[N, 3, 32, 32\]"):
        load_calibration(path, count=2, size=(32, 32), preprocessing=PRE, log=_quiet, cache_dir=False)
    nan = good.copy()
    nan[1, 0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", input=nan)
    with pytest.raises(CalibrationError, match="NaN or Inf"):
        load_calibration(tmp_path / "nan.npz", count=5, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False)
    np.savez(tmp_path / "uint8.npz", input=(good > 0).astype(np.uint8))
    with pytest.raises(CalibrationError, match="preprocessed"):
        load_calibration(tmp_path / "uint8.npz", count=5, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False)
    np.savez(tmp_path / "objects.npz", input=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CalibrationError, match="not a readable .npz"):
        load_calibration(tmp_path / "objects.npz", count=1, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(CalibrationError, match="not a readable .npz"):
        load_calibration(tmp_path / "junk.npz", count=1, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False)
    with pytest.raises(CalibrationError, match="does not exist"):
        load_calibration(tmp_path / "missing.npz", count=1, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False)


def test_generated_source_is_the_calib_split(tmp_path):
    from danet_deploy.data.scenes import SceneDataset

    calib = load_calibration("generated", count=2, size=(32, 48), preprocessing=PRE, log=_quiet, cache_dir=tmp_path)
    images = [image for image, _ in SceneDataset("calib", size=(32, 48), count=2)]
    np.testing.assert_array_equal(calib.tensors, preprocess(images, PRE, (32, 48)))
    assert calib.files[0].startswith("seed:2")


def test_photos_source(tmp_path):
    pytest.importorskip("skimage")
    calib = load_calibration("photos", count=2, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=tmp_path)
    assert calib.tensors.shape == (2, 3, *SIZE) and len(set(calib.files)) == 2
    with pytest.raises(CalibrationError, match="bundled photos"):
        load_calibration("photos", count=500, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=tmp_path)


def test_adapters(tmp_path):
    calib = load_calibration("generated", count=3, size=SIZE, preprocessing=PRE, log=_quiet, cache_dir=False)
    reader = calib.ort_reader("input")
    items = []
    while (item := reader.get_next()) is not None:
        items.append(item)
    assert len(items) == 3 and items[1]["input"].shape == (1, 3, *SIZE)
    np.testing.assert_array_equal(items[2]["input"][0], calib.tensors[2])
    reader.rewind()
    assert reader.get_next() is not None
    dataset = calib.nncf_dataset()
    batches = list(dataset.get_inference_data())
    assert len(batches) == 3 and batches[0].shape == (1, 3, *SIZE)
    assert calib.arrays("x")["x"] is calib.tensors


@pytest.mark.slow  # over 5 s: make test-slow (CI)
def test_int8_exports_with_a_static_batch_of_two(tmp_path):
    """Calibration feeds [2, 3, H, W] groups to a graph whose batch is fixed at 2."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("nncf")
    from danet_deploy import runtime
    from danet_deploy.export import ExportRequest, export

    for target in ("onnxruntime", "openvino"):
        path, manifest = export(
            ExportRequest(
                "danet_edge_r18_d8",
                target=target,
                precision="int8",
                batch=2,
                input_size=(64, 64),
                calib_count=3,
                output=tmp_path / target,
            ),
            log=lambda _: None,
        )
        assert manifest.input["shape"][0] == 2 and manifest.calibration["count"] == 3
        with runtime.load(path) as session:
            masks = session.run([np.zeros((64, 64, 3), np.uint8)] * 3)
            assert len(masks) == 3
