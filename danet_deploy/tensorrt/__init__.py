"""TensorRT facts and CUDA helpers shared by the exporter (engine build) and the runtime (engine run).

This floor sits below both ``export`` and ``runtime`` and imports neither: ``compat`` holds the
version/GPU/profile rules that need no TensorRT, ``cuda`` the few checked cuda-python calls.
"""
