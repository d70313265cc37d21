"""The released UN-EPT rows (README 'Results' table of amazon-science/unified-ept at 48f74a6, configs/*.py)."""

from __future__ import annotations

from ...zoo import PaperResult, ZooEntry

PAPER_TITLE = "A Unified Efficient Pyramid Transformer for Semantic Segmentation"
PAPER_URL = "https://arxiv.org/abs/2107.14209"
SOURCE = "unified-ept README 'Results' (validation, multi-scale + flip; no single-scale number given)"
LICENSE = "Apache-2.0"
NO_WEIGHTS = ("The repository publishes no trained UN-EPT checkpoints; convert one trained with its code "
              "(mmcv {'meta', 'state_dict'} file) with `hf-seg convert`.")

_CONTEXT = dict(hidden_size=256, num_attention_heads=8, num_points=16, num_feature_levels=3, encoder_layers=2,
                decoder_layers=2, ffn_dim=2048, dropout=0.1, activation="relu", num_queries=3600,
                query_layout=[60, 60], test_mode="slide", test_crop_size=[480, 480], test_stride=[160, 160])
_RESNET50_V1C = dict(backbone="resnet_v1c", resnet_depth=50, stem_channels=64, base_channels=64, strides=[1, 2, 1, 1],
                     dilations=[1, 1, 2, 4], contract_dilation=True, resnet_style="pytorch",
                     resnet_out_indices=[0, 1, 2, 3])
_DEIT_B = dict(backbone="deit", deit_img_size=480, deit_patch_size=16, deit_embed_dim=768, deit_depth=12,
               deit_num_heads=12, deit_mlp_ratio=4.0)
_NORM = dict(do_rescale=False, do_normalize=True, image_mean=[123.675, 116.28, 103.53],
             image_std=[58.395, 57.12, 57.375], channel_order="RGB", antialias=False, ignore_index=255)

ZOO_ENTRIES = [
    ZooEntry(
        name="unept-res50-ade20k-480",
        family="unept",
        dataset="ade20k",
        description="UN-EPT Res-50 (ResNetV1c-50, 480x480, 160k, ADE20K)",
        config={**_RESNET50_V1C, **_CONTEXT},
        processor={**_NORM, "resize_mode": "keep_ratio", "scale": [2048, 512]},
        crop_size=(480, 480),
        paper=PaperResult(miou_multi_scale=46.1),
        paper_title=PAPER_TITLE, paper_url=PAPER_URL, source_table=SOURCE, license=LICENSE,
        notes=f"configs/res50_unept_ade20k.py; README Mem 7.0 GB. {NO_WEIGHTS}",
    ),
    ZooEntry(
        name="unept-deit-ade20k-480",
        family="unept",
        dataset="ade20k",
        description="UN-EPT DeiT (DeiT-B/16 distilled, 480x480, 160k, ADE20K)",
        config={**_DEIT_B, **_CONTEXT},
        processor={**_NORM, "resize_mode": "keep_ratio", "scale": [2048, 512]},
        crop_size=(480, 480),
        paper=PaperResult(miou_multi_scale=50.5),
        paper_title=PAPER_TITLE, paper_url=PAPER_URL, source_table=SOURCE, license=LICENSE,
        notes=f"configs/deit_unept_ade20k.py; README Mem 8.5 GB. {NO_WEIGHTS}",
    ),
    ZooEntry(
        name="unept-deit-pcontext-480",
        family="unept",
        dataset="pascal_context_60",
        description="UN-EPT DeiT (DeiT-B/16 distilled, 480x480, 160k, PASCAL-Context)",
        config={**_DEIT_B, **_CONTEXT},
        processor={**_NORM, "resize_mode": "keep_ratio", "scale": [520, 520]},
        crop_size=(480, 480),
        paper=PaperResult(miou_multi_scale=55.2),
        paper_title=PAPER_TITLE, paper_url=PAPER_URL, source_table=SOURCE, license=LICENSE,
        notes=("configs/deit_unept_pcontext.py; README Mem 8.5 GB. The original trains 60 classes (background "
               "included, reduce_zero_label=False): the 'pascal_context_60' label set. " + NO_WEIGHTS),
        extra={"original_num_classes": 60, "original_reduce_zero_label": False},
    ),
]
