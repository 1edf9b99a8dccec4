"""A handful of real photographs, taken from the images scikit-image ships inside its wheel.

Why: calibration and visual checks should also see real camera statistics, not only generated
scenes, yet this project never downloads anything at run time. scikit-image bundles a few
public-domain / freely licensed test images in the installed package, which load offline.
Loaders that would need a download (``pooch``) are skipped instead of failing.
"""

from __future__ import annotations

import numpy as np

from ..errors import CalibrationError

#: ``(name, skimage.data function)``, in a fixed order so calibration is reproducible.
_LOADERS: tuple[tuple[str, str], ...] = (
    ("astronaut", "astronaut"),
    ("coffee", "coffee"),
    ("chelsea", "chelsea"),
    ("rocket", "rocket"),
    ("motorcycle", "stereo_motorcycle"),
    ("camera", "camera"),
)


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """Any skimage sample (gray, RGB, RGBA, bool, float) as uint8 ``[H, W, 3]``."""
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr[..., :3])


def sample_photos() -> list[tuple[str, np.ndarray]]:
    """The bundled photos as ``(name, uint8 [H, W, 3] RGB)``; only those that load offline.

    Raises:
        CalibrationError: scikit-image is not installed, or none of its images can be loaded.
    """
    try:
        from skimage import data as skdata
    except ImportError as exc:
        raise CalibrationError(
            "sample photos come from scikit-image: pip install 'danet-deploy[photos]' (or scikit-image), "
            "or pass a folder of your own images"
        ) from exc
    photos: list[tuple[str, np.ndarray]] = []
    for name, func in _LOADERS:
        loader = getattr(skdata, func, None)
        if loader is None:
            continue
        try:
            image = loader()
        except Exception:
            continue
        if isinstance(image, tuple):  # stereo pairs: keep the left view
            image = image[0]
        photos.append((name, _to_rgb(image)))
    if not photos:
        raise CalibrationError(
            "scikit-image is installed but none of its bundled images could be loaded; "
            "reinstall scikit-image or pass a folder of your own images"
        )
    return photos
