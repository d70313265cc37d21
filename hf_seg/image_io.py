"""Reading images and label maps: the one decoder behind predict, evaluate, finetune, the pipeline and the processor.

Every file is read in its displayed orientation (EXIF ``Orientation`` applied, as ``datasets``, transformers'
``load_image`` and OpenCV's ``IMREAD_COLOR`` do). Images become channels-last RGB arrays without losing precision:

======================  =====================================================================
PIL mode                array
======================  =====================================================================
``RGB``                 uint8 [H, W, 3]
``L``, ``1``, ``LA``    uint8, grey repeated into 3 channels (alpha dropped)
``P``, ``PA``           uint8 palette colours (transparency dropped, like ``RGBA``)
``RGBA``                uint8, alpha dropped (what OpenCV's ``IMREAD_COLOR`` and ``convert("RGB")`` do)
``CMYK``, ``YCbCr``...  uint8 through PIL's conversion to RGB
``I;16*``               uint16, grey repeated (16-bit PNG/TIFF: values 0..65535)
``I``                   int32, grey repeated (interpreted by value range, see below)
``F``                   float32, grey repeated (must hold 0..1)
======================  =====================================================================

(Pillow reads 16-bit-per-channel colour PNGs as 8-bit ``RGB`` itself, keeping the high byte.)

How integer pixel values are read (:func:`intensity_divisor`, also used by the image processor for arrays and
tensors a user passes): ``uint8`` is 0..255 and ``uint16`` is 0..65535, by dtype; other integer types (int8..int64,
uint32, uint64, PIL mode ``I``) carry no range of their own and are read by value: 0..255 as 8-bit, up to 65535 as
16-bit, anything else (negative, larger) is refused. Floats must hold 0..1.

Label maps (:func:`decode_label_map`) keep their stored values: palette indices for ``P``, 8/16/32-bit integers,
integral floats; colour (RGB) maps are refused since their classes are colours, not ids.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "decode_image",
    "decode_label_map",
    "describe_source",
    "image_size",
    "image_to_array",
    "intensity_divisor",
    "open_image",
    "save_image_atomic",
    "to_uint8",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm")
_ORIENTATION = 0x0112  # EXIF tag


class ImageReadError(ValueError):
    """A file that cannot be read as an image / label map; ``name`` is the file, the message says why."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def describe_source(source) -> str:
    """A name for messages: the path, or ``<bytes>`` / ``<PIL image>`` / ``<array>``."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, dict):
        return str(source.get("path") or "<bytes>")
    if isinstance(source, (bytes, bytearray)):
        return "<bytes>"
    return f"<{type(source).__name__}>"


# ------------------------------------------------------------------------------------------------- opening
def _open(source):
    from PIL import Image

    if isinstance(source, Image.Image):
        return source
    if isinstance(source, dict):  # a datasets.Image column read with decode=False
        if source.get("bytes") is not None:
            return Image.open(io.BytesIO(source["bytes"]))
        if source.get("path"):
            return Image.open(source["path"])
        raise ValueError("neither bytes nor a path")
    if isinstance(source, (bytes, bytearray)):
        return Image.open(io.BytesIO(bytes(source)))
    if isinstance(source, (str, os.PathLike)):
        return Image.open(source)
    if hasattr(source, "read"):
        return Image.open(source)
    raise TypeError(f"cannot read an image from a {type(source).__name__}")


def open_image(source, orient: bool = True):
    """A fully loaded PIL image from a path, bytes, a file object, ``{"path", "bytes"}`` or a PIL image, in its
    displayed orientation (EXIF) unless ``orient=False``. Any failure raises :class:`ImageReadError` naming it."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = describe_source(source)
    try:
        image = _open(source)
        image.load()
        if orient and image.getexif().get(_ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(image)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        reason = "not an image file Pillow can read" if isinstance(err, UnidentifiedImageError) else (
            f"cannot be decoded ({type(err).__name__}: {err})")
        if isinstance(err, FileNotFoundError):
            reason = "no such file"
        raise ImageReadError(name, reason) from err
    return image


def image_size(source) -> tuple[int, int]:
    """(height, width) as :func:`decode_image` will return it (EXIF rotation included), reading the header only."""
    from PIL import Image

    name = describe_source(source)
    if isinstance(source, np.ndarray):
        return int(source.shape[0]), int(source.shape[1])
    try:
        image = _open(source)
        width, height = image.size
        if image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):  # a quarter turn
            width, height = height, width
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageReadError(name, f"cannot be read ({type(err).__name__}: {err})") from err
    return height, width


# ------------------------------------------------------------------------------------------------- images
def image_to_array(image) -> np.ndarray:
    """A PIL image -> channels-last RGB array [H, W, 3] (dtype by mode, see the module docstring)."""
    mode = image.mode
    if mode.startswith("I;16"):
        grey = np.asarray(image).astype(np.uint16)  # "I;16B" is big-endian: make it native
    elif mode == "I":
        grey = np.asarray(image, dtype=np.int32)
    elif mode == "F":
        grey = np.asarray(image, dtype=np.float32)
    else:
        if mode == "RGB":
            rgb = image
        elif mode in ("L", "1", "LA", "La"):
            rgb = image.convert("L").convert("RGB")
        elif mode in ("P", "PA") and ("transparency" in image.info or mode == "PA"):
            rgb = image.convert("RGBA").convert("RGB")  # PIL warns when converting such palettes to RGB directly
        else:
            rgb = image.convert("RGB")  # P, RGBA, RGBa, CMYK, YCbCr, ... (LAB/HSV raise: reported by the caller)
        return np.asarray(rgb)
    return np.repeat(grey[..., None], 3, axis=-1)


def decode_image(source) -> np.ndarray:
    """The one image decoder: a file path, bytes, ``{"path", "bytes"}``, a PIL image or an array -> RGB [H, W, 3].

    Arrays are returned as they are (channels-last expected). Raises :class:`ImageReadError` naming the source."""
    if isinstance(source, np.ndarray):
        return source
    image = open_image(source)
    try:
        return image_to_array(image)
    except (OSError, ValueError) as err:
        raise ImageReadError(describe_source(source), f"PIL mode {image.mode!r} cannot be read as RGB ({err})") \
            from err


def intensity_divisor(array) -> float:
    """What integer pixel values are divided by to get 0..255: 1 (8-bit) or 257 (16-bit); see the module docstring.

    Accepts numpy arrays and torch tensors; raises ``ValueError`` for values no image format holds."""
    dtype = str(array.dtype).replace("torch.", "")
    if dtype == "uint8":
        return 1.0
    if dtype == "uint16":
        return 257.0
    if dtype not in ("int8", "int16", "int32", "int64", "uint32", "uint64"):
        raise ValueError(f"unsupported integer dtype {dtype}")
    empty = array.size == 0 if isinstance(array, np.ndarray) else array.numel() == 0
    if empty:
        return 1.0
    low, high = int(array.min()), int(array.max())
    if low < 0:
        raise ValueError(f"{dtype} pixel values must not be negative (minimum {low})")
    if high <= 255:
        return 1.0
    if high <= 65535:
        return 257.0
    raise ValueError(f"{dtype} pixel values up to {high}: expected 0..255 (8-bit) or 0..65535 (16-bit)")


def to_uint8(array: np.ndarray) -> np.ndarray:
    """An image array as uint8 0..255, reading its values like the image processor does (rounded)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or array.min(initial=0) < 0 or array.max(initial=0) > 1:
            raise ValueError("float images must hold values in [0, 1]")
        return np.round(array * 255.0).astype(np.uint8)
    divisor = intensity_divisor(array)
    if divisor == 1.0:
        return array.astype(np.uint8)
    return np.round(array.astype(np.float64) / divisor).astype(np.uint8)


# ------------------------------------------------------------------------------------------------- label maps
def decode_label_map(source) -> np.ndarray:
    """Stored class ids [H, W] of an annotation file (or PIL image / array): palette indices, 8/16/32-bit integers,
    or integral floats; colour maps and non-integer values are refused with :class:`ImageReadError`."""
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        array = source
    else:
        image = open_image(source)
        if image.mode not in ("L", "P", "1", "F") and not image.mode.startswith("I"):
            raise ImageReadError(name, f"a label map must have one channel of class ids, this is a PIL {image.mode!r} "
                                       "image (colour-coded annotations need converting to ids first)")
        array = np.asarray(image)
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("="))
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:-1])
    if array.ndim != 2:
        raise ImageReadError(name, f"a label map must be (H, W), got shape {array.shape}")
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            raise ImageReadError(name, "the label map holds NaN or infinite values")
        fractional = array != np.round(array)
        if fractional.any():
            raise ImageReadError(name, f"the label map holds non-integer values (e.g. {array[fractional][0]:g}): "
                                       "class ids must be integers")
        return array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise ImageReadError(name, f"unsupported label map dtype {array.dtype}")
    return array


# ------------------------------------------------------------------------------------------------- writing
def save_image_atomic(image, path, **save_kwargs) -> Path:
    """Save a PIL image so that ``path`` is either absent or complete: write a temporary sibling, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fmt = save_kwargs.pop("format", None) or _format_for(path)
    try:
        image.save(temporary, format=fmt, **save_kwargs)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _format_for(path: Path) -> str:
    from PIL import Image

    Image.init()
    try:
        return Image.EXTENSION[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"{path}: unknown image file extension {path.suffix!r}") from None
