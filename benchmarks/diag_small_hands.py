"""Why coco_wholebody_2d's hands are not found (issue 21, item 1): the landmark network on each hand, hand by hand.

    python benchmarks/diag_small_hands.py [--threads 2]

Sections:

* palms: for each ground-truth hand, the nearest palm of the default multi-scale search (centre within one
  hand size), its ROI against the ideal ROI (``landmark_rois`` of the ground truth): centre offset, size
  ratio, rotation error;
* oracle ROI: the landmark network on the ideal ROI, then re-cropped from its own landmarks 3 times
  (MediaPipe's tracking ROI): presence, 2D error and PCK@0.1 per hand and per iteration;
* resampling: the ideal ROI's crop made with each OpenCV interpolation, with a slight blur, an unsharp mask,
  a contrast stretch or CLAHE, at 1.0 / 1.3 / 1.6 times the ROI side: mean presence, hands read as present,
  PCK@0.1;
* flip / rotation views of the ideal crop fused by presence (``augment.augment_low_confidence``'s views);
* resolution alone: bare hands of the other annotated sets shrunk (area averaging) until their box is 60 /
  30 / 20 / 15 / 12 px, read from the ideal ROI: presence and PCK@0.1 (if they stay readable, resolution is
  not what fails on coco);
* annotation noise: PCK@0.1 of the ground truth itself jittered by Gaussian noise of 0.5 / 1 / 1.5 px per
  axis on a 15 px hand (what a perfect predictor scores against noisy labels).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
OTHER_SETS = ("ge2019_dev", "panoptic_2d", "cmu_handlabels_2d", "freihand_2d")


def _crop(img, roi, interp, post=None):
    from handcap.inference.batching import LANDMARK_INPUT_SIZE as S
    from handcap.inference.roi import crop_matrices

    c = cv2.warpAffine(img, crop_matrices(roi[None], S)[0], (S, S), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    return post(c) if post else c


def _read(nets, crops, rois):
    from handcap.inference.batching import LANDMARK_INPUT_SIZE as S
    from handcap.inference.roi import crop_to_image

    lm, pres, _, _ = nets._run(nets.landmark_net, np.stack(crops))
    return crop_to_image(lm[..., :2].astype(np.float64), np.array(rois), S), pres.ravel()


def _sharpen(c):
    return cv2.addWeighted(c, 1.6, cv2.GaussianBlur(c, (0, 0), 3), -0.6, 0)


def _stretch(c):
    lo, hi = np.percentile(c, 1), np.percentile(c, 99)
    return np.clip((c.astype(np.float32) - lo) * 255 / max(hi - lo, 1), 0, 255).astype(np.uint8)


def _clahe(c):
    lab = cv2.cvtColor(c, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(2.0, (4, 4)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


VARIANTS = {
    "bilinear": (cv2.INTER_LINEAR, None),
    "nearest": (cv2.INTER_NEAREST, None),
    "area": (cv2.INTER_AREA, None),
    "bicubic": (cv2.INTER_CUBIC, None),
    "lanczos": (cv2.INTER_LANCZOS4, None),
    "blur 1.5": (cv2.INTER_LINEAR, lambda c: cv2.GaussianBlur(c, (0, 0), 1.5)),
    "sharpen": (cv2.INTER_CUBIC, _sharpen),
    "stretch": (cv2.INTER_LINEAR, _stretch),
    "clahe": (cv2.INTER_LINEAR, _clahe),
}


def coco(nets) -> None:
    from handcap.inference.evaluation import load_annotated_set, pck
    from handcap.inference.multiscale import DetectionOptions, search_palms
    from handcap.inference.roi import landmark_rois, palm_rois
    from handcap.inference.sources import read_image

    data = load_annotated_set(DATA / "coco_wholebody_2d")
    hands = [
        (f"{im.path.stem[-6:]}/{gi}", read_image(im.path), g, im) for im in data.images for gi, g in enumerate(im.hands)
    ]
    print("coco_wholebody_2d, per hand: palm of the default search vs the ideal ROI; oracle ROI re-cropped 3 times")
    searches = {}
    for name, img, g, im in hands:
        if im.path not in searches:
            searches[im.path] = search_palms(nets, [img], DetectionOptions(), [True], 0.5)[0]
        ideal = landmark_rois(g.kp2d[None])[0]
        centre = g.kp2d.mean(0)
        near = [p for p in searches[im.path].palms if np.linalg.norm((p.box[:2] + p.box[2:]) / 2 - centre) < g.box_size]
        line = f"  {name} {g.side or '?':<5} {g.box_size:4.1f} px: "
        if near:
            p = min(near, key=lambda p: np.linalg.norm((p.box[:2] + p.box[2:]) / 2 - centre))
            r = palm_rois(p.box[None], p.keypoints[None])[0]
            rot = np.degrees(abs((r[3] - ideal[3] + np.pi) % (2 * np.pi) - np.pi))
            off = np.linalg.norm(r[:2] - ideal[:2]) / g.box_size
            size = r[2] / ideal[2]
            line += f"palm {p.score:.2f}, centre off {off:.2f} hand, size x{size:.2f}, rotation off {rot:3.0f} deg"
        else:
            line += "no palm" + " " * 48
        roi, its = ideal, []
        for _ in range(4):
            kp, pres = _read(nets, [_crop(img, roi, cv2.INTER_LINEAR)], [roi])
            err = np.linalg.norm(kp[0] - g.kp2d, axis=-1).mean()
            its.append(f"{pres[0]:.2f}/{err:4.1f}/{pck(kp[0], g.kp2d, g.visible, g.box_size):.2f}")
            roi = landmark_rois(kp)[0]
        print(line + " | oracle presence/err px/PCK per crop: " + "  ".join(its))
    print("coco_wholebody_2d, oracle ROI, crop variants: mean presence, hands present (>= 0.5), mean PCK@0.1")
    for scale in (1.0, 1.3, 1.6):
        for vname, (interp, post) in VARIANTS.items():
            rois = [landmark_rois(g.kp2d[None])[0] * [1, 1, scale, 1] for _, _, g, _ in hands]
            kp, pres = _read(
                nets, [_crop(img, r, interp, post) for (_, img, _, _), r in zip(hands, rois, strict=True)], rois
            )
            pk = [pck(kp[i], g.kp2d, g.visible, g.box_size) for i, (_, _, g, _) in enumerate(hands)]
            present = int((pres >= 0.5).sum())
            print(
                f"  ROI x{scale:.1f} {vname:<9} presence {pres.mean():.2f}, present {present}/10, PCK {np.mean(pk):.2f}"
            )
    views = []  # flip and +-0.3 rad, fused by presence as augment.py does
    for flip, turn in ((False, 0.0), (True, 0.0), (False, -0.3), (False, 0.3)):
        rois = [landmark_rois(g.kp2d[None])[0] + [0, 0, 0, turn] for _, _, g, _ in hands]
        lb = nets.landmarks([h[1] for h in hands], [r[None] for r in rois], flip=flip)
        views.append((lb.kp2d, lb.presence))
    w = np.stack([np.maximum(p, 1e-6) for _, p in views])
    fused = (np.stack([k for k, _ in views]) * w[..., None, None]).sum(0) / w.sum(0)[:, None, None]
    pk = [pck(fused[i], g.kp2d, g.visible, g.box_size) for i, (_, _, g, _) in enumerate(hands)]
    print(f"  4 views fused by presence: mean presence {w.mean():.2f}, PCK {np.mean(pk):.2f}")


def resolution(nets) -> None:
    from handcap.inference.evaluation import load_annotated_set, pck
    from handcap.inference.roi import landmark_rois
    from handcap.inference.sources import read_image

    print("bare hands of other sets shrunk to a given box size, ideal ROI: presence, present, PCK@0.1")
    for name in OTHER_SETS:
        data = load_annotated_set(DATA / name)
        hands = [(im, g) for im in data.images[:20] for g in im.hands]
        for target in (None, 60, 30, 20, 15, 12):
            p_all, pk_all = [], []
            for im, g in hands:
                img, kp, f = read_image(im.path), g.kp2d, 1.0
                if target and target < g.box_size:
                    f = target / g.box_size
                    img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
                    kp = (kp + 0.5) * f - 0.5
                roi = landmark_rois(kp[None])[0]
                out, pres = _read(nets, [_crop(img, roi, cv2.INTER_LINEAR)], [roi])
                vis = g.visible if g.visible.any() else np.ones(21, bool)
                p_all.append(pres[0])
                pk_all.append(pck(out[0], kp, vis, g.box_size * f))
            p_all = np.array(p_all)
            print(
                f"  {name:<18} {str(target or 'as is'):>5} px: {len(hands)} hands, presence {p_all.mean():.2f}, "
                f"present {np.mean(p_all >= 0.5):.2f}, PCK {np.nanmean(pk_all):.2f}"
            )


def label_noise() -> None:
    rng = np.random.default_rng(0)
    print("perfect predictor vs labels with Gaussian noise (per axis) on a 15 px hand: PCK@0.1 (threshold 1.5 px)")
    for sigma in (0.5, 1.0, 1.5):
        err = np.linalg.norm(rng.normal(0, sigma, (100000, 2)), axis=-1)
        print(f"  sigma {sigma:.1f} px: PCK {np.mean(err < 1.5):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"no data at {DATA}")
    import torch

    from handcap.inference.batching import HandNets

    torch.set_num_threads(args.threads)
    nets = HandNets("cpu")
    print("load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    coco(nets)
    resolution(nets)
    label_noise()


if __name__ == "__main__":
    main()
