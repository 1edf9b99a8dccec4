"""TensorRT facts and CUDA helpers shared by the exporter (engine build) and the runtime (engine run).

This floor sits below both ``export`` and ``runtime`` and imports neither: ``compat`` holds the
version/GPU/profile/DLA rules that need no TensorRT, ``cuda`` the few checked cuda-python calls
(driver vs bindings version, buffers, CUDA graphs with a clean failure path), ``logger`` the one
``trt.Logger`` a process may have.
"""
