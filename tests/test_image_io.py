"""The one image decoder (hf_seg.image_io): modes, bit depths, orientation, label maps, refusals, atomic writes."""

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from hf_seg import HfSegImageProcessor
from hf_seg.image_io import (
    ImageReadError,
    decode_image,
    decode_label_map,
    image_size,
    intensity_divisor,
    save_image_atomic,
    to_uint8,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit colour): grey [H, W] or colour [H, W, 3]."""
    array = array if array.ndim == 3 else array[..., None]
    height, width, channels = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, {1: 0, 3: 2}[channels], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def encoded(image: Image.Image, fmt="PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_colour_modes_become_rgb():
    rgb = Image.fromarray(RGB)
    assert np.array_equal(decode_image(encoded(rgb)), RGB)
    rgba = np.concatenate([RGB, np.full((5, 7, 1), 7, np.uint8)], axis=-1)
    assert np.array_equal(decode_image(encoded(Image.fromarray(rgba, mode="RGBA"))), RGB)  # alpha dropped
    grey = RGB[..., 0]
    for mode in ("L", "LA"):
        image = Image.fromarray(grey, mode="L").convert(mode)
        assert np.array_equal(decode_image(encoded(image)), np.repeat(grey[..., None], 3, -1)), mode
    palette = rgb.quantize(8)
    assert np.array_equal(decode_image(encoded(palette)), np.asarray(palette.convert("RGB")))
    transparent = palette.copy()
    transparent.info["transparency"] = 0
    assert decode_image(encoded(transparent, transparency=0)).shape == (5, 7, 3)
    cmyk = rgb.convert("CMYK")
    assert decode_image(encoded(cmyk, "JPEG", quality=100)).shape == (5, 7, 3)
    bits = Image.fromarray(grey > 128)
    assert set(np.unique(decode_image(encoded(bits)))) <= {0, 255}


def test_sixteen_bit_images_keep_their_precision_and_match_8_bit():
    grey8 = RGB[..., 1]
    decoded = decode_image(png16(grey8.astype(np.uint16) * 257))
    assert decoded.dtype == np.uint16 and decoded.shape == (5, 7, 3)
    assert np.array_equal(to_uint8(decoded), np.repeat(grey8[..., None], 3, -1))
    processor = HfSegImageProcessor(resize_mode="keep_ratio", scale=[20, 10])
    sixteen = processor(decode_image(png16(grey8.astype(np.uint16) * 257)), input_data_format="channels_last")
    eight = processor(Image.fromarray(grey8, mode="L"))
    assert torch.equal(sixteen["pixel_values"], eight["pixel_values"])
    # Pillow reads 16-bit colour PNGs as 8-bit RGB (the high byte); still exactly the 8-bit picture
    assert np.array_equal(decode_image(png16(RGB.astype(np.uint16) * 257)), RGB)


def test_processor_reads_pil_images_like_the_decoder():
    """The pipeline path (a PIL image handed to the processor) equals decoding the file first."""
    processor = HfSegImageProcessor(resize_mode="fixed", size={"height": 8, "width": 6})
    for data in (png16(RGB[..., 2].astype(np.uint16) * 300), encoded(Image.fromarray(RGB).quantize(5))):
        from_pil = processor(Image.open(io.BytesIO(data)))["pixel_values"]
        from_file = processor(decode_image(data), input_data_format="channels_last")["pixel_values"]
        assert torch.equal(from_pil, from_file)


def test_exif_orientation_is_applied():
    image = Image.fromarray(RGB)  # 7 wide, 5 high
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: display rotated 90 degrees clockwise
    data = encoded(image, "JPEG", quality=100, exif=exif.tobytes())
    decoded = decode_image(data)
    assert decoded.shape == (7, 5, 3) and image_size(data) == (7, 5)
    plain = decode_image(encoded(image, "JPEG", quality=100))
    assert np.array_equal(decoded, np.rot90(plain, k=-1))
    processor = HfSegImageProcessor(resize_mode="none")
    assert processor(Image.open(io.BytesIO(data)))["pixel_values"].shape == (1, 3, 7, 5)


def test_unreadable_files_are_named(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg") as err:
        decode_image(bad)
    assert err.value.name == str(bad)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(encoded(Image.fromarray(RGB))[:60])
    with pytest.raises(ImageReadError, match="truncated.png"):
        decode_image(truncated)
    with pytest.raises(ImageReadError, match="no such file"):
        decode_image(tmp_path / "missing.png")


def test_integer_values_are_read_by_dtype_then_range():
    assert intensity_divisor(np.zeros(3, np.uint8)) == 1 and intensity_divisor(np.zeros(3, np.uint16)) == 257
    assert intensity_divisor(np.full(3, 255, np.int64)) == 1 and intensity_divisor(np.full(3, 256, np.int32)) == 257
    assert intensity_divisor(torch.full((3,), 200, dtype=torch.int16)) == 1
    with pytest.raises(ValueError, match="negative"):
        intensity_divisor(np.array([-1, 3], np.int16))
    with pytest.raises(ValueError, match="65535"):
        intensity_divisor(np.array([70000], np.int64))
    assert to_uint8(np.array([0, 128, 255], np.int64)).tolist() == [0, 128, 255]
    assert to_uint8(np.array([0, 257 * 128, 65535], np.uint16)).tolist() == [0, 128, 255]


def test_label_maps_keep_ids_and_refuse_colour_and_fractions(tmp_path):
    ids = RNG.integers(0, 150, (5, 7), dtype=np.uint8)
    palette = Image.fromarray(ids, mode="P")
    palette.putpalette(list(RNG.integers(0, 256, 768, dtype=np.uint8)))
    assert np.array_equal(decode_label_map(encoded(palette)), ids)  # indices, not colours
    wide = (ids.astype(np.uint16) * 300)
    assert np.array_equal(decode_label_map(png16(wide)), wide)
    path = tmp_path / "colour.png"
    Image.fromarray(RGB).save(path)
    with pytest.raises(ImageReadError, match="colour.png.*one channel"):
        decode_label_map(path)
    floats = tmp_path / "floats.tif"
    Image.fromarray(np.full((5, 7), 2.7, np.float32), mode="F").save(floats)
    with pytest.raises(ImageReadError, match="floats.tif.*non-integer.*2.7"):
        decode_label_map(floats)
    Image.fromarray(np.full((5, 7), 2.0, np.float32), mode="F").save(floats)
    assert decode_label_map(floats).dtype == np.int64


def test_atomic_save_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out" / "a.png"
    save_image_atomic(Image.fromarray(RGB), target)
    save_image_atomic(Image.fromarray(RGB[::-1].copy()), target)
    assert np.array_equal(np.asarray(Image.open(target)), RGB[::-1])
    assert [p.name for p in target.parent.iterdir()] == ["a.png"]

    class Failing:
        def save(self, path, **kwargs):
            open(path, "wb").write(b"half")
            raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        save_image_atomic(Failing(), target)
    assert [p.name for p in target.parent.iterdir()] == ["a.png"]  # the old file is intact, no temporary left
    assert np.array_equal(np.asarray(Image.open(target)), RGB[::-1])
