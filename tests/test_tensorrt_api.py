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

import check_tensorrt_api as api  # noqa: E402 after the sys.path insert above

WHEEL_DIR = Path(os.environ.get("DANET_TRT_WHEELS", Path.home() / ".cache" / "danet-deploy" / "tensorrt-wheels"))


def test_collector_finds_required_and_guarded_names_with_their_owner():
    usage = api.collect([ROOT / m for m in api.MODULES])
    for name in (
        "Builder.build_serialized_network",
        "IBuilderConfig.set_memory_pool_limit",
        "IBuilderConfig.create_timing_cache",
        "IOptimizationProfile.set_shape",
        "Runtime.deserialize_cuda_engine",
        "IExecutionContext.execute_async_v3",
        "IExecutionContext.set_tensor_address",
        "ICudaEngine.get_tensor_profile_shape",
        "OnnxParser",
        "MemoryPoolType.WORKSPACE",
        "BuilderFlag.GPU_FALLBACK",
        "Logger.WARNING",
        "Logger.min_severity",
        "IEngineInspector.get_engine_information",
        "IBuilderConfig.can_run_on_DLA",
    ):
        assert name in usage.required, name
    # version-dependent: guarded by hasattr, so their absence is expected in some versions
    for name in (
        "BuilderFlag.FP16",
        "BuilderFlag.INT8",
        "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
        "IInt8EntropyCalibrator2",
        "IBuilderConfig.int8_calibrator",
        "IProgressMonitor",
        "IInt8EntropyCalibrator2.get_batch",
        "IProgressMonitor.phase_start",
    ):
        assert name in usage.optional, name
    assert "get" not in usage.required and "__version__" not in usage.required
    assert "IInt8EntropyCalibrator2._free" not in usage.optional  # our own helper, not a TensorRT override


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
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_tensorrt_api.py"), str(wheel)], capture_output=True, text=True
    )
    assert result.returncode == 1 and "DRIFT" in result.stdout and "99.0.0" in result.stdout


def _elf(strings: dict[str, bytes], code: bytes, functions: dict[str, int]) -> bytes:
    """A minimal x86-64 ELF64: .text = ``code``, .rodata = NUL-joined ``strings``, .symtab = ``functions``."""
    import struct

    rodata, offsets = b"", {}
    for key, text in strings.items():
        offsets[key] = len(rodata)
        rodata += text + b"\0"
    strtab, symtab = b"\0", b"\0" * 24
    text_addr, ro_addr = 0x1000, 0x8000
    for name, at in functions.items():
        symtab += struct.pack("<IBBHQQ", len(strtab), 0x12, 0, 1, text_addr + at, 16)
        strtab += name.encode() + b"\0"
    shstr = b"\0.text\0.rodata\0.symtab\0.strtab\0.shstrtab\0"
    body = [(code, 1, text_addr, 0), (rodata, 1, ro_addr, 0), (symtab, 2, 0, 4), (strtab, 3, 0, 0), (shstr, 3, 0, 0)]
    names = [1, 7, 15, 23, 31]
    data, placed = bytearray(64), []
    for blob, *_ in body:
        placed.append(len(data))
        data += blob
    shoff = len(data)
    data += b"\0" * 64
    for (blob, kind, addr, link), name, offset in zip(body, names, placed):
        data += struct.pack("<IIQQQQIIQQ", name, kind, 0, addr, offset, len(blob), link, 0, 1, 0)
    data[0:16] = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    struct.pack_into("<HHIQQQIHHHHHH", data, 16, 3, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 6, 5)
    return bytes(data), offsets, text_addr, ro_addr


def _lea_call(at: int, text_addr: int, string_addr: int, function_at: int) -> bytes:
    """``lea rsi, [rip + string]`` at ``at`` then ``call function`` (x86-64 encodings)."""
    import struct

    lea = b"\x48\x8d\x35" + struct.pack("<i", string_addr - (text_addr + at + 7))
    call = b"\xe8" + struct.pack("<i", (text_addr + function_at) - (text_addr + at + 7 + 5))
    return lea + call


def test_qualified_lookup_tells_an_enum_value_from_the_same_string_elsewhere(tmp_path):
    """ "INT8" registered on DataType but not on BuilderFlag: BuilderFlag.INT8 is missing, not found."""
    datatype_value = "_ZN8pybind115enum_IN8nvinfer18DataTypeEE5valueEPKcS2_S5_"
    flag_value = "_ZN8pybind115enum_IN8nvinfer111BuilderFlagEE5valueEPKcS2_S5_"
    config_def = "_ZN8pybind116class_IN8nvinfer114IBuilderConfigEJEE3defIMS2_FvvEJEEERS3_PKcOT_DpRKT0_"
    strings = {"INT8": b"INT8", "GPU_FALLBACK": b"GPU_FALLBACK", "set_flag": b"set_flag", "HALF": b"HALF"}
    functions = {datatype_value: 0x200, flag_value: 0x300, config_def: 0x400}
    _, offsets, text_addr, ro_addr = _elf(strings, b"", functions)
    code = bytearray(b"\x90" * 0x500)
    for at, key, fn in (
        (0x00, "INT8", 0x200),
        (0x20, "HALF", 0x200),
        (0x40, "GPU_FALLBACK", 0x300),
        (0x60, "set_flag", 0x400),
    ):
        code[at : at + 12] = _lea_call(at, text_addr, ro_addr + offsets[key], fn)
    so = tmp_path / "tensorrt.so"
    so.write_bytes(_elf(strings, bytes(code), functions)[0])
    reg = api.registry(so.read_bytes())
    assert reg.available and reg.enums == {"DataType", "BuilderFlag"}
    assert reg.members == {
        "DataType": {"INT8", "HALF"},
        "BuilderFlag": {"GPU_FALLBACK"},
        "IBuilderConfig": {"set_flag"},
    }
    usage = api.Usage()
    for name in (
        "DataType.INT8",
        "BuilderFlag.INT8",
        "BuilderFlag.GPU_FALLBACK",
        "IBuilderConfig.set_flag",
        "IBuilderConfig.HALF",
    ):
        usage.add(name, "x")
    entry = api.check(usage, [api.load_binary(so)])["wheels"]["tensorrt"]
    assert list(entry["missing_required"]) == ["BuilderFlag.INT8"]  # a bare-name check would have found "INT8"
    assert sorted(entry["qualified"]) == ["BuilderFlag.GPU_FALLBACK", "DataType.INT8", "IBuilderConfig.set_flag"]
    assert entry["bare"] == ["IBuilderConfig.HALF"]  # a class (not an enum): absence of a qualified hit is not proof


def test_non_x86_or_stripped_binaries_fall_back_to_bare_names(tmp_path):
    assert not api.registry(b"\x00create_network\x00").available
    data, *_ = _elf({"INT8": b"INT8"}, b"\x90" * 16, {})
    arm = bytearray(data)
    arm[0x12:0x14] = (183).to_bytes(2, "little")  # EM_AARCH64
    reg = api.registry(bytes(arm))
    assert not reg.available and "x86-64" in reg.reason


@pytest.mark.skipif(
    not sorted(WHEEL_DIR.glob("tensorrt_cu1*_bindings-*.whl")),
    reason=f"no tensorrt-cu12/cu13-bindings wheels in {WHEEL_DIR} (pip download --no-deps -d DIR "
    "tensorrt-cu12-bindings==10.16.1.11 tensorrt-cu13-bindings==11.4.0.106)",
)
def test_docstring_constants_name_their_class_and_member():
    assert api.doc_member_of_symbol("_ZN8tensorrt20IExecutionContextDocL16execute_async_v3E") == (
        "IExecutionContext",
        "execute_async_v3",
    )
    assert api.doc_member_of_symbol("_ZN8tensorrt17IBuilderConfigDoc16set_timing_cacheE") == (
        "IBuilderConfig",
        "set_timing_cache",
    )
    for other in (
        "_ZN8tensorrt8IBuilderL5buildE",  # not a Doc scope
        "_ZN8tensorrt3DocL4nameE",  # a scope named only Doc
        "_ZN8tensorrt20IExecutionContextDocL99shortE",  # length past the end
        "_ZN8pybind116class_IN8nvinfer18IBuilderEE3defE",
        "main",
    ):
        assert api.doc_member_of_symbol(other) is None, other


def test_downloaded_wheels_have_every_required_name():
    wheels = sorted(WHEEL_DIR.glob("tensorrt_cu1*_bindings-*.whl"))
    usage = api.collect([ROOT / m for m in api.MODULES])
    report = api.check(usage, [api.load_binary(w) for w in wheels])
    for version, entry in report["wheels"].items():
        assert not entry["missing_required"], (version, entry["missing_required"])
        assert entry["qualification"].startswith("class-qualified"), entry["qualification"]
        assert {"DataType.INT8", "BuilderFlag.GPU_FALLBACK", "Logger.WARNING"} <= set(entry["qualified"])
        # methods confirmed on their class through the bindings' per-class docstring constants
        assert {
            "IExecutionContext.execute_async_v3",
            "IExecutionContext.set_tensor_address",
            "IBuilderConfig.set_timing_cache",
        } <= set(entry["qualified"])
        if version.startswith("11."):  # removed in 11: the code must treat them as optional
            assert {
                "BuilderFlag.FP16",
                "BuilderFlag.INT8",
                "IInt8EntropyCalibrator2",
                "IBuilderConfig.int8_calibrator",
            } <= set(entry["missing_optional"])
        if version.startswith("10."):
            assert {"BuilderFlag.FP16", "BuilderFlag.INT8"} <= set(entry["qualified"])


def test_cuda_runtime_names_are_collected_and_checked(tmp_path):
    used = api.collect_cudart([ROOT / m for m in api.CUDA_MODULES])
    for name in (
        "cudaMallocHost",
        "cudaMemcpyAsync",
        "cudaMemcpyDeviceToHost",
        "cudaStreamBeginCapture",
        "cudaGraphLaunch",
        "cudaEventElapsedTime",
        "cudaSuccess",
    ):
        assert name in used, name
    wheel = tmp_path / "cuda_bindings-0.0.1-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("cuda/bindings/runtime.cpython-311-x86_64-linux-gnu.so", b"\x00cudaMalloc(size)\x00")
    missing = api.check_cuda_bindings(wheel)
    assert "cudaMalloc" not in missing and "cudaMallocHost" in missing
