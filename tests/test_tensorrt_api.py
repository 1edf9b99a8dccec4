"""The TensorRT API drift check: the collector on our modules, the matcher on synthetic strings,
and (when bindings wheels were downloaded) the real 10.x / 11.x check."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import check_tensorrt_api as api  # noqa: E402

WHEEL_DIR = Path(os.environ.get("DANET_TRT_WHEELS", Path.home() / ".cache" / "danet-deploy" / "tensorrt-wheels"))


def test_collector_finds_required_and_guarded_names():
    usage = api.collect([ROOT / m for m in api.MODULES])
    for name in ("build_serialized_network", "set_memory_pool_limit", "create_timing_cache", "set_shape",
                 "deserialize_cuda_engine", "execute_async_v3", "set_tensor_address", "get_tensor_profile_shape",
                 "OnnxParser", "WORKSPACE", "GPU_FALLBACK"):
        assert name in usage.required, name
    # version-dependent: guarded by hasattr, so their absence is expected in some versions
    for name in ("FP16", "INT8", "STRONGLY_TYPED", "IInt8EntropyCalibrator2", "int8_calibrator", "IProgressMonitor",
                 "get_batch", "phase_start"):
        assert name in usage.optional, name
    assert "get" not in usage.required and "__version__" not in usage.required


def test_matcher_counts_whole_and_tail_merged_strings_but_not_docstrings(tmp_path):
    so = tmp_path / "tensorrt.so"
    so.write_bytes(b"\x00create_network\x00UINT8\x00Enable FP16 layer selection.\x00")
    usage = api.Usage()
    for name in ("create_network", "INT8", "FP16"):
        usage.add(name, "x")
    report = api.check(usage, [api.load_binary(so)])
    entry = report["wheels"]["tensorrt"]
    assert entry["found"] == 2 and list(entry["missing_required"]) == ["FP16"]


def test_script_exit_code_reflects_drift(tmp_path):
    wheel = tmp_path / "tensorrt_cu13_bindings-99.0.0-cp311-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("tensorrt_bindings/tensorrt.so", b"\x00Builder\x00")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_tensorrt_api.py"), str(wheel)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "DRIFT" in result.stdout and "99.0.0" in result.stdout


@pytest.mark.skipif(not sorted(WHEEL_DIR.glob("tensorrt_cu1*_bindings-*.whl")),
                    reason=f"no tensorrt-cu12/cu13-bindings wheels in {WHEEL_DIR} (pip download --no-deps -d DIR "
                           "tensorrt-cu12-bindings==10.16.1.11 tensorrt-cu13-bindings==11.4.0.106)")
def test_downloaded_wheels_have_every_required_name():
    wheels = sorted(WHEEL_DIR.glob("tensorrt_cu1*_bindings-*.whl"))
    usage = api.collect([ROOT / m for m in api.MODULES])
    report = api.check(usage, [api.load_binary(w) for w in wheels])
    for version, entry in report["wheels"].items():
        assert not entry["missing_required"], (version, entry["missing_required"])
        if version.startswith("11."):  # removed in 11: the code must treat them as optional
            assert {"FP16", "IInt8EntropyCalibrator2", "int8_calibrator"} <= set(entry["missing_optional"])


def test_cuda_runtime_names_are_collected_and_checked(tmp_path):
    used = api.collect_cudart([ROOT / m for m in api.CUDA_MODULES])
    for name in ("cudaMallocHost", "cudaMemcpyAsync", "cudaMemcpyDeviceToHost", "cudaStreamBeginCapture",
                 "cudaGraphLaunch", "cudaEventElapsedTime", "cudaSuccess"):
        assert name in used, name
    wheel = tmp_path / "cuda_bindings-0.0.1-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("cuda/bindings/runtime.cpython-311-x86_64-linux-gnu.so", b"\x00cudaMalloc(size)\x00")
    missing = api.check_cuda_bindings(wheel)
    assert "cudaMalloc" not in missing and "cudaMallocHost" in missing
