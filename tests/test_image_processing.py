"""The shared processor: resize modes, normalisation, labels, post-processing and refusals of bad input."""

import numpy as np
import pytest
import torch
from PIL import Image

from hf_seg import HfSegImageProcessor


def test_fixed_resize_and_imagenet_normalisation():
    processor = HfSegImageProcessor(size={"height": 32, "width": 48})
    image = Image.new("RGB", (100, 60), (124, 116, 104))
    pixel_values = processor(image)["pixel_values"]
    assert pixel_values.shape == (1, 3, 32, 48) and pixel_values.dtype == torch.float32
    expected = (torch.tensor([124, 116, 104]) / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor(
        [0.229, 0.224, 0.225])
    assert torch.allclose(pixel_values[0, :, 5, 5], expected, atol=1e-5)


def test_mmseg_keep_ratio_bgr_and_0_255_statistics():
    processor = HfSegImageProcessor(resize_mode="keep_ratio", scale=[2048, 512], do_rescale=False,
                                    image_mean=[123.675, 116.28, 103.53], image_std=[58.395, 57.12, 57.375],
                                    channel_order="BGR")
    assert processor.target_size(1024, 2048) == (512, 1024)  # Cityscapes
    assert processor.target_size(512, 683) == (512, 683)
    assert processor.target_size(300, 400) == (512, 683)  # short side capped first
    image = np.zeros((10, 10, 3), np.uint8)
    image[..., 0] = 200  # red
    out = processor(image)["pixel_values"]
    # BGR: the red channel comes last
    assert torch.allclose(out[0, 2, 0, 0], torch.tensor((200 - 103.53) / 57.375), atol=1e-4)


def test_csail_short_side_rounds_up_to_padding_constant():
    processor = HfSegImageProcessor(resize_mode="short_side", short_side=450, max_size=1000, size_divisor=8)
    assert processor.target_size(364, 500) == (456, 624)  # 450 x 618.1 -> rounded up to multiples of 8
    assert processor.target_size(300, 2000) == (152, 1000)  # long side capped at 1000


def test_labels_reduce_label_map_and_padding():
    processor = HfSegImageProcessor(resize_mode="none", do_reduce_labels=True, pad_size_divisor=8)
    image = np.zeros((5, 6, 3), np.uint8)
    seg = np.array([[0, 1, 2, 150, 255, 3]] * 5, np.uint8)
    out = processor(image, segmentation_maps=seg)
    assert out["labels"].dtype == torch.int64 and out["labels"].shape == (1, 8, 8)
    assert out["labels"][0, 0, :6].tolist() == [255, 0, 1, 149, 255, 2]
    assert (out["labels"][0, 5:] == 255).all() and (out["labels"][0, :, 6:] == 255).all()
    assert out["pixel_values"].shape == (1, 3, 8, 8)
    cityscapes = HfSegImageProcessor(resize_mode="none", label_map={7: 0, 26: 13, 0: 255})
    mapped = cityscapes(image, segmentation_maps=np.array([[7, 26, 0, 7, 7, 7]] * 5))["labels"]
    assert mapped[0, 0, :3].tolist() == [0, 13, 255]


def test_modes_and_bit_depths_are_converted():
    processor = HfSegImageProcessor(resize_mode="none", do_normalize=False, do_rescale=False)
    gray = Image.fromarray(np.full((4, 4), 100, np.uint8), mode="L")
    rgba = Image.fromarray(np.full((4, 4, 4), 100, np.uint8), mode="RGBA")
    gray16 = Image.fromarray(np.full((4, 4), 100 * 257, np.uint16))  # PIL mode I;16
    assert gray16.mode == "I;16"
    sixteen = np.full((5, 6, 3), 100 * 257, np.uint16)
    chw = torch.full((3, 5, 6), 100, dtype=torch.uint8)
    for image in (gray, rgba, gray16, sixteen, chw):
        out = processor(image)["pixel_values"]
        assert out.shape[:2] == (1, 3) and torch.allclose(out, torch.tensor(100.0)), type(image)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64, np.uint32, np.int8])
def test_signed_and_wide_integers_are_read_by_value_range(dtype):
    processor = HfSegImageProcessor(resize_mode="none", do_normalize=False, do_rescale=False)
    eight_bit = np.full((5, 6, 3), 100, dtype)
    assert torch.equal(processor(eight_bit)["pixel_values"], torch.full((1, 3, 5, 6), 100.0))  # not / 257
    if np.iinfo(dtype).max >= 65535:
        sixteen = np.full((5, 6, 3), 100 * 257, dtype)
        assert torch.allclose(processor(sixteen)["pixel_values"], torch.tensor(100.0))
    if np.iinfo(dtype).min < 0:
        with pytest.raises(ValueError, match="negative"):
            processor(np.full((5, 6, 3), -1, dtype))
    if np.iinfo(dtype).max > 65535:
        with pytest.raises(ValueError, match="0..65535"):
            processor(np.full((5, 6, 3), 70000, dtype))


def test_ambiguous_channel_layouts_are_refused_unless_stated():
    processor = HfSegImageProcessor(resize_mode="none", do_normalize=False, do_rescale=False)
    hwc = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)  # 4x4 RGB, or 4 channels of 4x3?
    with pytest.raises(ValueError, match="input_data_format"):
        processor(hwc)
    with pytest.raises(ValueError, match="input_data_format"):
        processor(torch.from_numpy(hwc))
    last = processor(hwc, input_data_format="channels_last")["pixel_values"]
    first = processor(np.moveaxis(hwc, -1, 0), input_data_format="channels_first")["pixel_values"]
    assert last.shape == (1, 3, 4, 4) and torch.equal(last, first)
    assert torch.equal(last[0, :, 1, 2], torch.tensor([18.0, 19.0, 20.0]))
    with pytest.raises(ValueError, match="7 channels"):
        processor(np.zeros((4, 5, 7), np.uint8), input_data_format="channels_last")
    # unambiguous shapes need nothing, whichever end holds the channels
    assert processor(np.zeros((5, 6, 3), np.uint8))["pixel_values"].shape == (1, 3, 5, 6)
    assert processor(np.zeros((3, 5, 6), np.uint8))["pixel_values"].shape == (1, 3, 5, 6)
    # PIL images have a layout: a 4x3 RGB picture is never ambiguous
    assert processor(Image.new("RGB", (3, 4)))["pixel_values"].shape == (1, 3, 4, 3)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((0, 4, 3), np.uint8), "empty"),
    (np.zeros((2, 2, 2, 2, 3), np.uint8), "dimensions"),
    (np.full((5, 6, 3), np.nan, np.float32), "NaN"),
    (np.full((5, 6, 3), 3.0, np.float32), r"\[0, 1\]"),
    (np.zeros((5, 6, 7), np.uint8), "channels"),
    ("not an image", "expected a PIL image"),
])
def test_bad_images_raise_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        HfSegImageProcessor()(bad)


def test_bad_segmentation_maps_raise_clear_errors():
    processor = HfSegImageProcessor(resize_mode="none")
    image = np.zeros((5, 6, 3), np.uint8)
    with pytest.raises(ValueError, match="segmentation map 0 is"):
        processor(image, segmentation_maps=np.zeros((6, 5), np.uint8))
    with pytest.raises(ValueError, match="integer class ids"):
        processor(image, segmentation_maps=np.full((5, 6), 0.5))
    with pytest.raises(ValueError, match="2 images but 1"):
        processor([image, image], segmentation_maps=[np.zeros((5, 6))])
    with pytest.raises(ValueError, match="one channel of class ids"):
        processor(image, segmentation_maps=Image.new("RGB", (6, 5)))


def test_config_errors():
    with pytest.raises(ValueError, match="resize_mode"):
        HfSegImageProcessor(resize_mode="crop")
    with pytest.raises(ValueError, match="short_side"):
        HfSegImageProcessor(resize_mode="short_side")
    with pytest.raises(ValueError, match="positive integer"):
        HfSegImageProcessor(resize_mode="short_side", short_side="5")


def test_batches_of_mixed_sizes_are_padded_and_cropped_back():
    processor = HfSegImageProcessor(resize_mode="keep_ratio", scale=[64, 32], pad_size_divisor=16)
    images = [np.zeros((32, 64, 3), np.uint8), np.zeros((40, 40, 3), np.uint8)]
    out = processor(images)
    assert out["pixel_values"].shape == (2, 3, 32, 64)
    assert out["valid_sizes"].tolist() == [[32, 64], [32, 32]]

    class Outputs:  # logits at stride 4
        logits = torch.zeros(2, 3, 8, 16)

    Outputs.logits[1, 2, :, :8] = 1  # class 2 inside image 1's valid area, class 0 in its padding
    maps = processor.post_process_semantic_segmentation(Outputs, target_sizes=[(10, 20), (40, 40)],
                                                        valid_sizes=out["valid_sizes"], input_size=(32, 64))
    assert maps[0].shape == (10, 20) and maps[1].shape == (40, 40)
    assert (maps[1] == 2).all()


def test_save_and_reload(tmp_path):
    processor = HfSegImageProcessor(resize_mode="short_side", short_side=450, max_size=1000, size_divisor=8,
                                    label_map={7: 0}, do_reduce_labels=True)
    processor.save_pretrained(tmp_path)
    from transformers import AutoImageProcessor  # noqa: F401  (loading by class is what users do too)

    loaded = HfSegImageProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == processor.to_dict()
    assert loaded.label_map == {7: 0}


def test_per_call_overrides(tmp_path):
    processor = HfSegImageProcessor(size={"height": 32, "width": 32})
    image = np.zeros((10, 10, 3), np.uint8)
    assert processor(image, size={"height": 16, "width": 8})["pixel_values"].shape == (1, 3, 16, 8)
    assert processor(image)["pixel_values"].shape == (1, 3, 32, 32)  # the override did not stick
    processor.save_pretrained(tmp_path)
    reloaded = HfSegImageProcessor.from_pretrained(tmp_path)
    assert reloaded(image, do_normalize=False, do_rescale=False)["pixel_values"].max() == 0
    with pytest.raises(TypeError, match="bogus"):
        processor(image, bogus=1)


def test_do_convert_rgb_is_accepted():
    """transformers' ``do_convert_rgb``: True is what the processor always does (3-channel RGB), False is refused."""
    processor = HfSegImageProcessor(resize_mode="none", do_rescale=False, do_normalize=False)
    image = np.arange(2 * 5 * 3, dtype=np.uint8).reshape(2, 5, 3)
    assert torch.equal(processor(image, do_convert_rgb=True)["pixel_values"], processor(image)["pixel_values"])
    with pytest.raises(ValueError, match="do_convert_rgb"):
        processor(image, do_convert_rgb=False)
