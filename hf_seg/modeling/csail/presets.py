"""Zoo rows of the MIT CSAIL ADE20K models: the README performance table (facts from fixtures/csail/zoo.json)."""

from __future__ import annotations

from ...zoo import PaperResult, ZooEntry

PAPER_TITLE = "Semantic Understanding of Scenes through the ADE20K Dataset"
PAPER_URL = "https://arxiv.org/abs/1608.05442"
# single-scale testing resizes the short side to 450 (long side <= 1000) and rounds up to padding_constant;
# multi-scale testing averages probabilities over short sides 300..600
MULTI_SCALE_SHORT_SIDES = (300, 375, 450, 525, 600)


def _row(name, readme_row, encoder, decoder, padding_constant, single, multi, urls, notes=""):
    return ZooEntry(
        name=name,
        family="csail",
        dataset="ade20k",
        description=readme_row,
        config={"encoder": encoder, "decoder": decoder, "deep_sup_scale": 0.4, "test_mode": "whole"},
        processor={
            "resize_mode": "short_side", "short_side": 450, "max_size": 1000, "size_divisor": padding_constant,
            "antialias": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
        },
        crop_size=(450, 450),
        paper=PaperResult(
            miou_single_scale=single[0], pixel_accuracy=single[1], fps=single[2],
            miou_multi_scale=multi[0],
            multi_scale_note=f"multi-scale (short sides {MULTI_SCALE_SHORT_SIDES}), no flip; "
                             f"pixel accuracy {multi[1]}, {multi[2]} fps",
        ),
        checkpoint_urls=urls,
        paper_title=PAPER_TITLE,
        paper_url=PAPER_URL,
        source_table="CSAILVision/semantic-segmentation-pytorch README.md, Performance table (ADE20K val; fps on one Titan Xp)",
        license="BSD-3-Clause",
        notes=notes,
        extra={"multi_scale_short_sides": MULTI_SCALE_SHORT_SIDES, "multi_scale_pixel_accuracy": multi[1]},
    )


ZOO_ENTRIES = [
    _row(
        'csail-ade20k-mobilenetv2dilated-c1-deepsup', 'MobileNetV2dilated + C1_deepsup', 'mobilenetv2dilated', 'c1_deepsup', padding_constant=8,
        single=(34.84, 75.75, 17.2), multi=(33.84, 76.8, 10.3),
        urls=('http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-mobilenetv2dilated-c1_deepsup/encoder_epoch_20.pth',
              'http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-mobilenetv2dilated-c1_deepsup/decoder_epoch_20.pth'),
        notes='As printed, the single-scale overall score 54.07 equals (32.39+75.75)/2; the mIoU was edited from 32.39 to 34.84 in commit d1f5933 (2019-07-10) without changing the score. Multi-scale mIoU is lower than single-scale as printed.',
    ),
    _row(
        'csail-ade20k-mobilenetv2dilated-ppm-deepsup', 'MobileNetV2dilated + PPM_deepsup', 'mobilenetv2dilated', 'ppm_deepsup', padding_constant=8,
        single=(35.76, 77.77, 14.9), multi=(36.28, 78.26, 6.7),
        urls=(),
        notes='README row only: no config file in the repository and no checkpoint directory named in the repository. Third-party download scripts list 8 server directories and this one is not among them; one third-party note reports HTTP 404 for ade20k-mobilenetv2dilated-ppm_deepsup/{encoder,decoder}_epoch_20.pth. As printed, overall score 56.27 != (35.76+77.77)/2 = 56.765. Data/test settings here are the config/defaults.py values for dilated encoders.',
    ),
    _row(
        'csail-ade20k-resnet18dilated-c1-deepsup', 'ResNet18dilated + C1_deepsup', 'resnet18dilated', 'c1_deepsup', padding_constant=8,
        single=(33.82, 76.05, 13.9), multi=(35.34, 77.41, 5.8),
        urls=('http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet18dilated-c1_deepsup/encoder_epoch_20.pth',
              'http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet18dilated-c1_deepsup/decoder_epoch_20.pth'),
        notes='README row only: no config file in the repository. The server directory/epoch (ade20k-resnet18dilated-c1_deepsup, epoch 20) comes from third-party download scripts, not from the repository. Data/test settings here are the config/defaults.py values for dilated encoders.',
    ),
    _row(
        'csail-ade20k-resnet18dilated-ppm-deepsup', 'ResNet18dilated + PPM_deepsup', 'resnet18dilated', 'ppm_deepsup', padding_constant=8,
        single=(38.0, 78.64, 11.7), multi=(38.81, 79.29, 4.2),
        urls=('http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet18dilated-ppm_deepsup/encoder_epoch_20.pth',
              'http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet18dilated-ppm_deepsup/decoder_epoch_20.pth'),
        notes=None,
    ),
    _row(
        'csail-ade20k-resnet50dilated-ppm-deepsup', 'ResNet50dilated + PPM_deepsup', 'resnet50dilated', 'ppm_deepsup', padding_constant=8,
        single=(41.26, 79.73, 8.3), multi=(42.14, 80.13, 2.6),
        urls=('http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet50dilated-ppm_deepsup/encoder_epoch_20.pth',
              'http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet50dilated-ppm_deepsup/decoder_epoch_20.pth'),
        notes="The model demo_test.sh downloads (the repository's default config).",
    ),
    _row(
        'csail-ade20k-resnet101dilated-ppm-deepsup', 'ResNet101dilated + PPM_deepsup', 'resnet101dilated', 'ppm_deepsup', padding_constant=8,
        single=(42.19, 80.59, 6.8), multi=(42.53, 80.91, 2.0),
        urls=('http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet101dilated-ppm_deepsup/encoder_epoch_25.pth',
              'http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet101dilated-ppm_deepsup/decoder_epoch_25.pth'),
        notes="Until the HEAD commit 8f27c9b (2020-10-31, 'Fix typo') this config said arch_encoder resnet50dilated and DIR ckpt/ade20k-resnet50dilated-ppm_deepsup.",
    ),
    _row(
        'csail-ade20k-resnet50-upernet', 'UperNet50', 'resnet50', 'upernet', padding_constant=32,
        single=(40.44, 79.8, 8.4), multi=(41.55, 80.23, 2.9),
        urls=('http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet50-upernet/encoder_epoch_30.pth',
              'http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet50-upernet/decoder_epoch_30.pth'),
        notes=None,
    ),
    _row(
        'csail-ade20k-resnet101-upernet', 'UperNet101', 'resnet101', 'upernet', padding_constant=32,
        single=(42.0, 80.79, 7.8), multi=(42.66, 81.01, 2.3),
        urls=('http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet101-upernet/encoder_epoch_50.pth',
              'http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet101-upernet/decoder_epoch_50.pth'),
        notes='The config says TRAIN.num_epoch 40 but VAL/TEST.checkpoint epoch_50.pth; commit 04eedc4 (2020-06-29) changed the checkpoint from epoch_40 to epoch_50 because the server has epoch_50.',
    ),
    _row(
        'csail-ade20k-hrnetv2-c1', 'HRNetV2', 'hrnetv2', 'c1', padding_constant=32,
        single=(42.03, 80.77, 5.8), multi=(43.2, 81.47, 1.9),
        urls=('http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-hrnetv2-c1/encoder_epoch_30.pth',
              'http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-hrnetv2-c1/decoder_epoch_30.pth'),
        notes='HRNetV2-W48. README numbers updated 2019-08-10 (commit e5aa2fc, from 41.74/80.59 and 42.99/81.25), after the switch to RGB/ImageNet normalisation.',
    ),
]
