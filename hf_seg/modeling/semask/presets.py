"""Zoo rows of SeMask-FPN: the README tables of Picsart-AI-Research/SeMask-Segmentation (facts from
fixtures/semask/zoo.json: merged configs, README mIoU values and checkpoint links)."""

from __future__ import annotations

from ...zoo import PaperResult, ZooEntry

PAPER_TITLE = "SeMask: Semantically Masked Transformers for Semantic Segmentation"
PAPER_URL = "https://arxiv.org/abs/2112.12782"
SOURCE = ("Picsart-AI-Research/SeMask-Segmentation README.md (top-level results table and SeMask-FPN/README.md), "
          "commit 16539be; mIoU on the val set (COCO-Stuff 10k: test set), single scale and multi-scale + flip")
LICENSE = "Apache-2.0 (README badge; see the repository's LICENSE file)"

# Swin variants as the released configs set them
BACKBONES = {
    "t": dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7),
    "s": dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24], window_size=7),
    "b": dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12),
    "l": dict(embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48], window_size=12),
}
PRETRAINING = {"t": "ImageNet-1k, 224x224", "s": "ImageNet-1k, 224x224", "b": "ImageNet-22k, 384x384",
               "l": "ImageNet-22k, 384x384"}
DATASETS = {  # label set, README name, file suffix, reduce_zero_label
    "ade20k": ("ade20k", "ADE20K", "ade20k", True),
    "cityscapes": ("cityscapes", "Cityscapes", "cityscapes", False),
    "coco-stuff10k": ("coco_stuff", "COCO-Stuff 10k", "coco10k", True),
}
MS_FLIP_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def _row(size, dataset, crop, test_scale, params, single, multi, url, ohem=None, prior_classes=None):
    label_set, readme_dataset, suffix, reduce_zero_label = DATASETS[dataset]
    backbone = BACKBONES[size]
    variant = {"t": "tiny", "s": "small", "b": "base", "l": "large"}[size]
    config_stem = (f"semfpn_semask_swin_{variant}_patch4_window{backbone['window_size']}_{crop}x{crop}_80k_{suffix}")
    notes = [f"Backbone pre-training: {PRETRAINING[size]}; README parameter count {params}M."]
    if ohem:
        notes.append(f"Trained with OHEM (OHEMPixelSampler, min_kept={ohem}) on the main loss only.")
    if prior_classes is not None:
        notes.append(f"The config never sets the backbone's num_cls, so the class-prior maps keep {prior_classes} "
                     "channels (the ADE20K default) while the head predicts 171 labels.")
    if dataset == "coco-stuff10k":
        notes.append("The config loads annotations with reduce_zero_label=True (kept in the processor).")
    config = {
        **backbone,
        "semantic_window_size": backbone["window_size"],
        "mlp_ratio": 4.0,
        "drop_path_rate": 0.3,
        "decoder_channels": 256,
        "decoder_dropout": 0.1,
        "prior_loss_weight": 0.4,
        "ohem_min_kept": ohem,
        "test_mode": "whole",
    }
    if prior_classes is not None:
        config["num_prior_classes"] = prior_classes
    return ZooEntry(
        name=f"semask-{size}-fpn-{dataset}-{crop}",
        family="semask",
        dataset=label_set,
        description=f"SeMask-{size.upper()} FPN ({readme_dataset}, {crop}x{crop}, 80k)",
        config=config,
        processor={
            "resize_mode": "keep_ratio", "scale": list(test_scale), "antialias": False,
            "do_rescale": False, "image_mean": [123.675, 116.28, 103.53], "image_std": [58.395, 57.12, 57.375],
            "channel_order": "RGB", "do_reduce_labels": reduce_zero_label,
        },
        crop_size=(crop, crop),
        paper=PaperResult(miou_single_scale=single, miou_multi_scale=multi, params_m=float(params),
                          multi_scale_note=f"image ratios {MS_FLIP_RATIOS} of the test scale + horizontal flip"),
        checkpoint_urls=(url,),
        paper_title=PAPER_TITLE,
        paper_url=PAPER_URL,
        source_table=SOURCE,
        license=LICENSE,
        notes=" ".join(notes),
        extra={"original_config": f"SeMask-FPN/configs/semask_swin/{suffix.replace('coco10k', 'coco_stuff10k')}/"
                                  f"{config_stem}.py",
               "backbone_pretraining": PRETRAINING[size], "ms_flip_ratios": MS_FLIP_RATIOS},
        original_name=f"SeMask-{size.upper()} FPN ({readme_dataset})",
    )


_DRIVE = "https://drive.google.com/file/d/{}/view?usp=sharing"

ZOO_ENTRIES = [
    _row("t", "ade20k", 512, (2048, 512), 35, 42.06, 43.36, _DRIVE.format("1L0daUHWQGNGCXHF-cKWEauPSyBV0GLOR")),
    _row("s", "ade20k", 512, (2048, 512), 56, 45.92, 47.63, _DRIVE.format("1QhDG4SyGFtWL5kP9BbBoyPqTuFu7fH_y")),
    _row("b", "ade20k", 512, (2048, 512), 96, 49.35, 50.98, _DRIVE.format("1PXCEhrrUy5TJC4dUp7YDQvaapnMzGT6C")),
    _row("l", "ade20k", 640, (2560, 640), 211, 51.89, 53.52, _DRIVE.format("1u5flfAQCiQJbMZbZPIlGUGTYBz9Ca7rE"),
         ohem=100000),
    _row("t", "cityscapes", 768, (2048, 1024), 34, 74.92, 76.56,
         _DRIVE.format("1_JBOJQSUVes-CWs075XyPnuNfG5psELr")),
    _row("s", "cityscapes", 768, (2048, 1024), 56, 77.13, 79.14,
         _DRIVE.format("1WyT207dZmdwETBUR6aeiqOVfQdUIV_fN")),
    _row("b", "cityscapes", 768, (2048, 1024), 96, 77.70, 79.73,
         _DRIVE.format("1-LzVB6XzD7IR0zzE5qmE0EM4ZTv429b4")),
    _row("l", "cityscapes", 768, (2048, 1024), 211, 78.53, 80.39,
         _DRIVE.format("1R9DDCmucQ_a_6ZkMGufEZCzJ-_qVMqCB")),
    _row("t", "coco-stuff10k", 512, (2048, 512), 35, 37.53, 38.88, _DRIVE.format("1qhXsJ8H64JPI_DW7CNzhxpHSEG2sKaIl"),
         ohem=100000, prior_classes=150),
    _row("s", "coco-stuff10k", 512, (2048, 512), 56, 40.72, 42.27, _DRIVE.format("1ddXSMQu5ClkbLNMyQdyT0ATaOr86vIkL"),
         ohem=100000, prior_classes=150),
    _row("b", "coco-stuff10k", 512, (2048, 512), 96, 44.63, 46.30, _DRIVE.format("1pGWI7U9bZJoe4ZaDx7ktWELx-uVN7rL0"),
         ohem=100000, prior_classes=150),
    _row("l", "coco-stuff10k", 640, (2560, 640), 211, 47.47, 48.54, _DRIVE.format("1F6B9x9pX-SYEth7hdtxeNUeQ3XncOH7G"),
         ohem=100000, prior_classes=150),
]
