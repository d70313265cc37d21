"""Zoo rows of the MIT CSAIL ADE20K models: the README performance table (facts from fixtures/csail/zoo.json).

The numbers are the README's at the commit the fixtures name (8f27c9b, 2020). Earlier README versions printed a
training-time column (2018-03 to 2019-08) and one more row, ResNet50dilated + C1_deepsup (2018-03-29 to 2018-12-04,
named ``ResNet50_dilated8 + c1_bilinear_deepsup`` until 2018-11-28); those come from the README's git history, and
where an earlier version printed other numbers for a row, its notes say so.
"""

from __future__ import annotations

from ...zoo import PaperResult, ZooEntry

PAPER_TITLE = "Semantic Understanding of Scenes through the ADE20K Dataset"
PAPER_URL = "https://arxiv.org/abs/1608.05442"
# single-scale testing resizes the short side to 450 (long side <= 1000) and rounds up to padding_constant;
# multi-scale testing averages probabilities over short sides 300..600
MULTI_SCALE_SHORT_SIDES = (300, 375, 450, 525, 600)
SOURCE_TABLE = ("CSAILVision/semantic-segmentation-pytorch README.md, Performance table (ADE20K val; fps on one "
                "Titan Xp; training time in hours per epoch x epochs on 8 Titan Xp, ResNet101dilated on 8 Tesla P40, "
                "from the README versions of 2018-03 to 2019-08 that had that column)")


def _row(name, readme_row, encoder, decoder, padding_constant, single, multi, urls, training_time="", notes=""):
    """``single``/``multi``: (mIoU, pixel accuracy, overall score, fps) as the README prints them."""
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
            miou_single_scale=single[0], pixel_accuracy=single[1], overall_score_single_scale=single[2],
            fps=single[3],
            miou_multi_scale=multi[0], pixel_accuracy_multi_scale=multi[1], overall_score_multi_scale=multi[2],
            fps_multi_scale=multi[3],
            multi_scale_note=f"multi-scale (short sides {MULTI_SCALE_SHORT_SIDES}), no flip",
            training_time=training_time,
        ),
        checkpoint_urls=urls,
        paper_title=PAPER_TITLE,
        paper_url=PAPER_URL,
        source_table=SOURCE_TABLE,
        license="BSD-3-Clause",
        notes=notes,
        extra={"multi_scale_short_sides": MULTI_SCALE_SHORT_SIDES},
    )


_SERVER = "http://sceneparsing.csail.mit.edu/model/pytorch/"


def _urls(directory, epoch):
    return tuple(f"{_SERVER}{directory}/{part}_epoch_{epoch}.pth" for part in ("encoder", "decoder"))


ZOO_ENTRIES = [
    _row(
        'csail-ade20k-mobilenetv2dilated-c1-deepsup', 'MobileNetV2dilated + C1_deepsup', 'mobilenetv2dilated',
        'c1_deepsup', padding_constant=8,
        single=(34.84, 75.75, 54.07, 17.2), multi=(33.84, 76.8, 55.32, 10.3),
        urls=_urls('ade20k-mobilenetv2dilated-c1_deepsup', 20),
        training_time='0.8 x 20 = 16 hours',
        notes='As printed, the single-scale overall score 54.07 equals (32.39+75.75)/2; the mIoU was edited from '
              '32.39 to 34.84 in commit d1f5933 (2019-07-10) without changing the score. The same commit changed the '
              'multi-scale figures from 33.75 / 76.75 / 55.25 (mIoU / pixel accuracy / overall score, printed since '
              'the row was added on 2018-12-03) to 33.84 / 76.80 / 55.32. Multi-scale mIoU is lower than '
              'single-scale as printed.',
    ),
    _row(
        'csail-ade20k-mobilenetv2dilated-ppm-deepsup', 'MobileNetV2dilated + PPM_deepsup', 'mobilenetv2dilated',
        'ppm_deepsup', padding_constant=8,
        single=(35.76, 77.77, 56.27, 14.9), multi=(36.28, 78.26, 57.27, 6.7),
        urls=(),
        training_time='0.9 x 20 = 18.0 hours',
        notes='README row only: no config file in the repository and no checkpoint directory named in the repository. '
              'Third-party download scripts list 8 server directories and this one is not among them; one '
              'third-party note reports HTTP 404 for '
              'ade20k-mobilenetv2dilated-ppm_deepsup/{encoder,decoder}_epoch_20.pth. '
              'As printed, overall score 56.27 != (35.76+77.77)/2 = 56.765. Data/test settings here are the '
              'config/defaults.py values for dilated encoders.',
    ),
    _row(
        'csail-ade20k-resnet18dilated-c1-deepsup', 'ResNet18dilated + C1_deepsup', 'resnet18dilated', 'c1_deepsup',
        padding_constant=8,
        single=(33.82, 76.05, 54.94, 13.9), multi=(35.34, 77.41, 56.38, 5.8),
        urls=_urls('ade20k-resnet18dilated-c1_deepsup', 20),
        training_time='0.42 x 20 = 8.4 hours',
        notes='README row only: no config file in the repository. The server directory/epoch '
              '(ade20k-resnet18dilated-c1_deepsup, epoch 20) comes from third-party download scripts, not from the '
              'repository. Data/test settings here are the config/defaults.py values for dilated encoders. Named '
              'ResNet18_dilated8 + c1_bilinear_deepsup in the README until 2018-11-28.',
    ),
    _row(
        'csail-ade20k-resnet18dilated-ppm-deepsup', 'ResNet18dilated + PPM_deepsup', 'resnet18dilated', 'ppm_deepsup',
        padding_constant=8,
        single=(38.0, 78.64, 58.32, 11.7), multi=(38.81, 79.29, 59.05, 4.2),
        urls=_urls('ade20k-resnet18dilated-ppm_deepsup', 20),
        training_time='1.1 x 20 = 22.0 hours',
        notes='Named ResNet18_dilated8 + ppm_bilinear_deepsup in the README until 2018-11-28.',
    ),
    _row(
        'csail-ade20k-resnet50dilated-c1-deepsup', 'ResNet50dilated + C1_deepsup', 'resnet50dilated', 'c1_deepsup',
        padding_constant=8,
        single=(34.88, 76.54, 55.71, None), multi=(35.49, 77.53, 56.66, None),
        urls=(),
        training_time='1.38 x 20 = 27.6 hours',
        notes='A row of the README from 2018-03-29 (commit 5d13daf) to 2018-12-04, named ResNet-50_dilated8 + '
              'c1_bilinear_deepsup, then ResNet50_dilated8 + c1_bilinear_deepsup (2018-09-08) and ResNet50dilated + '
              'C1_deepsup (2018-11-28); multi-scale figures from 2018-09-22 (commit 0539224); the training time was '
              'first printed as 27.5 hours. Commit 05b413e (2018-12-05, inference speed in fps) removed the row; it '
              'never had an fps figure (the inference-time column of 2018-12-04 printed "-"). No config file and no '
              'checkpoint directory for it are named in the repository at any commit, so no checkpoint URL is given. '
              'It was trained with the code of its time (BGR input in 0..255 minus the mean [102.9801, 115.9465, '
              '122.7717]); the preprocessing here is the current code\'s, as for the other rows, and a checkpoint of '
              'that era converts with its normalisation from an argparse-era config (see the converter).',
    ),
    _row(
        'csail-ade20k-resnet50dilated-ppm-deepsup', 'ResNet50dilated + PPM_deepsup', 'resnet50dilated', 'ppm_deepsup',
        padding_constant=8,
        single=(41.26, 79.73, 60.5, 8.3), multi=(42.14, 80.13, 61.14, 2.6),
        urls=_urls('ade20k-resnet50dilated-ppm_deepsup', 20),
        training_time='1.67 x 20 = 33.4 hours',
        notes="The model demo_test.sh downloads (the repository's default config). Until commit d1f5933 "
              '(2019-07-10) the README printed the multi-scale mIoU / pixel accuracy as 42.04 / 80.23 (overall '
              'score 61.14 in both versions). Named ResNet50_dilated8 + ppm_bilinear_deepsup until 2018-11-28.',
    ),
    _row(
        'csail-ade20k-resnet101dilated-ppm-deepsup', 'ResNet101dilated + PPM_deepsup', 'resnet101dilated',
        'ppm_deepsup', padding_constant=8,
        single=(42.19, 80.59, 61.39, 6.8), multi=(42.53, 80.91, 61.72, 2.0),
        urls=_urls('ade20k-resnet101dilated-ppm_deepsup', 25),
        training_time='3.82 x 25 = 95.5 hours (8 Tesla P40)',
        notes="Until the HEAD commit 8f27c9b (2020-10-31, 'Fix typo') this config said arch_encoder resnet50dilated "
              'and DIR ckpt/ade20k-resnet50dilated-ppm_deepsup. Named ResNet101_dilated8 + ppm_bilinear_deepsup in '
              'the README until 2018-11-28; trained on 8 Tesla P40 GPUs (22 GB) because of the memory dilated '
              'convolutions take in a deep network.',
    ),
    _row(
        'csail-ade20k-resnet50-upernet', 'UperNet50', 'resnet50', 'upernet', padding_constant=32,
        single=(40.44, 79.8, 60.12, 8.4), multi=(41.55, 80.23, 60.89, 2.9),
        urls=_urls('ade20k-resnet50-upernet', 30),
        training_time='1.75 x 20 = 35.0 hours',
    ),
    _row(
        'csail-ade20k-resnet101-upernet', 'UperNet101', 'resnet101', 'upernet', padding_constant=32,
        single=(42.0, 80.79, 61.4, 7.8), multi=(42.66, 81.01, 61.84, 2.3),
        urls=_urls('ade20k-resnet101-upernet', 50),
        training_time='2.5 x 25 = 62.5 hours',
        notes='The config says TRAIN.num_epoch 40 but VAL/TEST.checkpoint epoch_50.pth; commit 04eedc4 (2020-06-29) '
              'changed the checkpoint from epoch_40 to epoch_50 because the server has epoch_50. Until commit '
              "c48d1e6 (2019-01-18, 'update upernet101') the README printed single-scale 41.98 / 80.63 / 61.34 "
              '(mIoU / pixel accuracy / overall score); its first versions (2018-04) printed the training time as '
              '2.5 * 25 = 50.0 hours.',
    ),
    _row(
        'csail-ade20k-hrnetv2-c1', 'HRNetV2', 'hrnetv2', 'c1', padding_constant=32,
        single=(42.03, 80.77, 61.4, 5.8), multi=(43.2, 81.47, 62.34, 1.9),
        urls=_urls('ade20k-hrnetv2-c1', 30),
        notes='HRNetV2-W48. README numbers updated 2019-08-10 (commit e5aa2fc, from 41.74 / 80.59 / 61.17 and '
              '42.99 / 81.25 / 62.12, mIoU / pixel accuracy / overall score), after the switch to RGB/ImageNet '
              'normalisation. The row was added on 2019-08-01, in the commit that began removing the training-time '
              'column, with none printed.',
    ),
]
