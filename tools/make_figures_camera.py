"""README figures for camera alignment and smoothing, made with HandCap's own commands.

Run: .venv/bin/python tools/make_figures_camera.py [--video V] [--frames 0:120] [--capture x.npz]

1. ``python -m handcap capture VIDEO -o out/figures/capture.npz --frames A:B`` (skipped with --capture);
2. in bpy: import the capture, match a camera to the footage, measure the overlay (reprojection
   error per hand), smooth both hands with the default settings;
3. writes ``docs/images/overlay_hands.png``: the rendered hands with the captured 2D keypoints
   (green) and the rig's joints seen through the matched camera (red) on a neutral background,
   and ``docs/images/smoothing_jitter.png``: per-frame joint acceleration and fingertip depth
   before/after smoothing. The same overlay ON the footage goes to ``out/figures/`` only: the
   footage is not ours to publish, so no pixel of it goes into the repository.

Prints the numbers (overlay error, jitter before/after, deviation) the figures show.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO.parent / "shared" / "data" / "videos" / "two_hands_counting_720p.mp4"
COLORS = {"raw": (150, 150, 150), "smoothed": (200, 90, 20), "right": (40, 40, 220), "left": (40, 160, 40)}


def run_capture(video: Path, frames: str, out: Path) -> Path:
    cmd = [sys.executable, "-m", "handcap", "capture", str(video), "-o", str(out), "--frames", frames]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    return out


def per_frame_accel(positions: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T,) mean joint acceleration in mm/frame^2 (NaN where a neighbour is missing)."""
    out = np.full(len(positions), np.nan)
    ok = valid[:-2] & valid[1:-1] & valid[2:]
    acc = np.linalg.norm(positions[2:] - 2 * positions[1:-1] + positions[:-2], axis=-1).mean(-1) * 1000
    out[1:-1][ok] = acc[ok]
    return out


def plot(panels, size=(1200, 760), path=None):
    """Line charts drawn with OpenCV (no plotting library in the environment).
    panels: [(title, y label, [(legend, x (N,), y (N,), BGR colour)])], stacked vertically."""
    import cv2

    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    ph = h // len(panels)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i, (title, ylabel, series) in enumerate(panels):
        x0, y0, x1, y1 = 90, i * ph + 40, w - 30, (i + 1) * ph - 45
        xs = np.concatenate([s[1] for s in series])
        ys = np.concatenate([s[2][np.isfinite(s[2])] for s in series])
        xmin, xmax = float(xs.min()), float(xs.max())
        ymin, ymax = float(np.percentile(ys, 0.5)), float(np.percentile(ys, 99.5))
        pad = 0.08 * (ymax - ymin or 1.0)
        ymin, ymax = ymin - pad, ymax + pad

        def to_px(x, y, xmin=xmin, xmax=xmax, ymin=ymin, ymax=ymax, x0=x0, x1=x1, y0=y0, y1=y1):
            return (x0 + (x - xmin) / (xmax - xmin or 1) * (x1 - x0), y1 - (y - ymin) / (ymax - ymin) * (y1 - y0))

        cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
        for tick in np.linspace(ymin, ymax, 5):
            _, ty = to_px(xmin, tick)
            cv2.line(img, (x0 - 4, int(ty)), (x1, int(ty)), (225, 225, 225), 1)
            cv2.putText(img, f"{tick:.1f}", (8, int(ty) + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for tick in np.linspace(xmin, xmax, 7):
            tx, _ = to_px(tick, ymin)
            cv2.putText(img, f"{tick:.0f}", (int(tx) - 10, y1 + 16), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, title, (x0, y0 - 12), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, ylabel, (x0 + 6, y0 + 16), font, 0.4, (80, 80, 80), 1, cv2.LINE_AA)
        cv2.putText(img, "frame", (x1 - 40, y1 + 32), font, 0.4, (80, 80, 80), 1, cv2.LINE_AA)
        for k, (legend, x, y, colour) in enumerate(series):
            pts = np.array([to_px(a, np.clip(b, ymin, ymax)) for a, b in zip(x, y, strict=True)])
            finite = np.isfinite(y)
            for a, b, ok in zip(pts[:-1], pts[1:], finite[:-1] & finite[1:], strict=True):
                if ok:
                    cv2.line(
                        img, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)), colour, 2, cv2.LINE_AA
                    )
            lx = x1 - 260
            ly = y0 + 18 + 18 * k
            cv2.line(img, (lx, ly - 4), (lx + 24, ly - 4), colour, 3)
            cv2.putText(img, legend, (lx + 30, ly), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    if path is not None:
        cv2.imwrite(str(path), img)
    return img


def flatten_on_grey(rgba_path: Path, out_path: Path, crop_to: np.ndarray | None = None) -> None:
    """Composite an RGBA render on a neutral grey; optionally crop around (N, 2) pixel points."""
    import cv2

    img = cv2.imread(str(rgba_path), cv2.IMREAD_UNCHANGED).astype(np.float64) / 255.0
    alpha = img[..., 3:4]
    grey = np.full_like(img[..., :3], 0.55)
    flat = (img[..., :3] * alpha + grey * (1 - alpha)) * 255
    if crop_to is not None and len(crop_to):
        lo = np.maximum(np.floor(crop_to.min(0) - 60), 0).astype(int)
        hi = np.minimum(np.ceil(crop_to.max(0) + 60), [flat.shape[1], flat.shape[0]]).astype(int)
        flat = flat[lo[1] : hi[1], lo[0] : hi[0]]
    cv2.imwrite(str(out_path), np.round(flat).astype(np.uint8))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=VIDEO)
    ap.add_argument("--frames", default="0:120", help="source frames A:B to capture")
    ap.add_argument("--capture", type=Path, default=None, help="use this capture file instead of capturing")
    ap.add_argument("--frame", type=int, default=None, help="source frame of the overlay figure (default: middle)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    ap.add_argument("--scratch", type=Path, default=REPO / "out" / "figures", help="git-ignored working folder")
    args = ap.parse_args()
    if not args.video.is_file():
        sys.exit(f"footage not found: {args.video}")
    args.scratch.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    capture_path = args.capture or run_capture(args.video, args.frames, args.scratch / "capture.npz")

    import bpy

    import handcap
    from handcap.builders import camera, overlay, smooth
    from handcap.builders.importer import ImportOptions, import_capture
    from handcap.core.capture import read_capture

    bpy.ops.wm.read_homefile(use_empty=True)
    handcap.register()
    context = bpy.context
    cap = read_capture(capture_path)
    result = import_capture(context, capture_path, ImportOptions(frame_offset=1, set_scene_timing=True))
    space = bpy.data.objects[result.camera_space]
    matched = camera.match_camera(context, space, camera.MatchOptions(clip_path=str(args.video)))
    arms = {side: bpy.data.objects[name] for side, name in result.armatures.items()}
    print(f"capture: {cap.num_frames} frames, hands {sorted(cap.hands)}, camera '{matched.camera}' {matched.warnings}")

    reports = camera.reprojection_errors(context, list(arms.values()), captures={a.name: cap for a in arms.values()})
    for side, arm in arms.items():
        r = reports[arm.name]
        print(
            f"overlay {side}: {r.mean_px:.2f} px mean, {r.median_px:.2f} median, {r.max_px:.1f} max over "
            f"{len(r.frames)} frames (vs the capture's own fit: {r.fit_mean_px:.3f} px); "
            f"{r.confident_mean_px:.2f} px without {int(r.doubtful.sum())} doubtful frames"
        )

    panels_jitter, panels_depth = [], []
    for side, arm in arms.items():
        rep = smooth.smooth_armature(arm)
        print(f"smoothing {side}: {rep.summary()}; max deviation {rep.deviation_max_mm:.1f} mm")
        rest, parents = smooth.rest_pose(arm)
        fn = smooth.positions_fn(rest, parents)
        raw = smooth.read_motion(arm, arm.handcap_smoothing.raw_action)
        new = smooth.read_motion(arm, arm.animation_data.action)
        p_raw, p_new = fn(raw.motion.rot, raw.motion.loc), fn(new.motion.rot, new.motion.loc)
        src = raw.frames - 1  # source frame index (frame offset 1)
        a_raw = per_frame_accel(p_raw, raw.motion.valid)
        a_new = per_frame_accel(p_new, raw.motion.valid)
        panels_jitter.append(
            (
                f"{side} hand: mean joint acceleration (jitter {rep.jitter_before_mm:.2f} -> "
                f"{rep.jitter_after_mm:.2f} mm/frame^2, deviation {rep.deviation_mean_mm:.2f} mm)",
                "mm/frame^2",
                [("raw capture", src, a_raw, COLORS["raw"]), ("smoothed (default)", src, a_new, COLORS["smoothed"])],
            )
        )
        tip = 8  # index fingertip
        z_raw = np.where(raw.motion.valid, p_raw[:, tip, 2] * 1000, np.nan)
        z_new = np.where(new.keyed, p_new[:, tip, 2] * 1000, np.nan)  # bridged gaps included
        panels_depth.append(
            (
                f"{side} hand: index fingertip distance from the camera",
                "mm",
                [("raw capture", src, z_raw, COLORS["raw"]), ("smoothed (default)", src, z_new, COLORS["smoothed"])],
            )
        )
    plot(panels_jitter + panels_depth[:1], path=args.out / "smoothing_jitter.png")
    after = camera.reprojection_errors(context, list(arms.values()), captures={a.name: cap for a in arms.values()})
    for side, arm in arms.items():
        print(f"overlay {side} after smoothing: {after[arm.name].mean_px:.2f} px mean against the 2D keypoints")

    first, last = result.scene_frames
    frame = (first + last) // 2 if args.frame is None else args.frame + result.frame_offset
    cam = bpy.data.objects[matched.camera]
    opts = dict(frame_start=frame, frame_end=frame, draw_keypoints=True, draw_joints=True)
    hands_only = overlay.render_overlay(
        context,
        cam,
        list(arms.values()),
        overlay.OverlayOptions(str(args.scratch / "hands"), show_footage=False, **opts),
    )
    (t,) = np.flatnonzero(cap.frames == frame - result.frame_offset)
    points = np.concatenate([cap.hands[s].kp2d[t] for s in cap.hands if cap.hands[s].valid[t]])
    flatten_on_grey(Path(hands_only.files[0]), args.out / "overlay_hands.png", crop_to=points)
    footage = overlay.render_overlay(
        context, cam, list(arms.values()), overlay.OverlayOptions(str(args.scratch / "footage"), **opts)
    )
    print(f"wrote {args.out / 'overlay_hands.png'}, {args.out / 'smoothing_jitter.png'}")
    print(f"with the footage (local only, not for the repository): {footage.files[0]}")


if __name__ == "__main__":
    main()
