"""``evaluate --report``: the report's numbers equal ``evaluate --json``'s, a missed hand is reported as such,
and the overlays put the ground truth and the estimate where the numbers say (draw, then locate the colour).

The annotated set is built in tmp_path at test time from two ge2019_dev images of ../shared/data (copied,
never committed) plus one blank image carrying a ground-truth hand nothing can detect.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import cv2
import numpy as np
import pytest

from handcap.cli import main
from handcap.inference.evaluation import GtHand, GtImage, HandScore, ImageScore, Prediction, summarize
from handcap.inference.report import draw
from handcap.inference.report.eval_report import (
    HandRow,
    build_eval_report,
    categorise,
    composite,
    hand_row,
)

from .conftest import shared_path

SOURCE_IMAGES = ("images/00000.jpg", "images/00001.jpg")


def build_set(root) -> None:
    """hands.json + images/: two real ge2019_dev images and a blank one with image 0's ground truth."""
    src = shared_path("ge2019_dev")
    meta = json.loads((src / "hands.json").read_text())
    by_file = {im["file"]: im for im in meta["images"]}
    (root / "images").mkdir(parents=True)
    images = []
    for name in SOURCE_IMAGES:
        shutil.copyfile(src / name, root / name)
        images.append(by_file[name])
    cv2.imwrite(str(root / "images" / "blank.png"), np.full((256, 256, 3), 128, np.uint8))
    images.append(dict(by_file[SOURCE_IMAGES[0]], file="images/blank.png"))
    meta["images"] = images
    (root / "hands.json").write_text(json.dumps(meta))


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(list(argv))
    return code, out.getvalue()


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("set")
    build_set(root)
    report_dir = root.parent / "report"
    code, stdout = run_cli("evaluate", str(root), "--json", "--device", "cpu", "--report", str(report_dir))
    assert code == 0
    return root, report_dir, json.loads(stdout)


def test_report_numbers_equal_evaluate_json(evaluated):
    root, report_dir, printed = evaluated
    code, stdout = run_cli("evaluate", str(root), "--json", "--device", "cpu")  # a separate run, no report
    assert code == 0
    plain = json.loads(stdout)
    report = json.loads((report_dir / "report.json").read_text())
    assert report["metrics"] == plain == printed
    assert plain["images"] == 3 and plain["hands"] == 3 and plain["detected_rate"] == pytest.approx(2 / 3, abs=1e-4)
    # Derived figures agree with the headline numbers (the same per-image results, the same averaging).
    hands = report["hands"]
    detected = [h for h in hands if h["detected"]]
    assert len(detected) == 2
    assert round(np.mean([h["kp2d_err_px"] for h in detected]), 4) == plain["kp2d_err_px"]
    assert round(np.mean([h["pa_mpjpe_mm"] for h in detected]), 4) == plain["pa_mpjpe_mm_raw"]
    curve = report["pck2d"][0]
    assert round(curve["values"][curve["thresholds"].index(0.1)], 4) == plain["pck_0.1"]
    everyone = report["pck2d"][1]
    assert everyone["values"][-1] <= 2 / 3 + 1e-9  # the missed hand counts as 0 in the "all hands" curve
    for h in detected:  # per-joint errors average to the per-hand number
        assert np.mean(h["joint_err_px"]) == pytest.approx(h["kp2d_err_px"], rel=1e-9)
    for key in ("pa_mpjpe_mm_fitted", "root_depth_err_mm", "reproj_err_px_fitted"):
        if plain.get(key) is not None:  # fitted per-hand values (stored rounded to 4 digits) give the mean
            assert np.mean([h["fitted"][key] for h in detected]) == pytest.approx(plain[key], abs=2e-4)
    # The HTML page shows the same values.
    page = (report_dir / "index.html").read_text()
    for key in ("kp2d_err_px", "pck_0.1", "pa_mpjpe_mm_raw"):
        assert f"<th>{key}</th><td>{plain[key]}</td>" in page
    assert "http" not in page


def test_missed_hand_is_reported_first(evaluated):
    _, report_dir, _ = evaluated
    report = json.loads((report_dir / "report.json").read_text())
    assert report["categories"]["missed hand"] == [{"image": "images/blank.png", "gt_index": 0}]
    assert report["images"][0]["file"] == "images/blank.png" and report["images"][0]["score"] is None  # inf
    blank = next(h for h in report["hands"] if h["image"] == "images/blank.png")
    assert not blank["detected"] and blank["kp2d_err_px"] is None and "missed hand" in blank["categories"]
    for image in report["images"]:
        assert (report_dir / image["overlay"]).is_file()
    for h in report["hands"]:  # handedness is judged wherever both sides are known
        wrong = h["detected"] and h["side_gt"] and h["side_pred"] and h["side_gt"] != h["side_pred"]
        assert ("wrong handedness" in h["categories"]) == bool(wrong)
    assert report["pck3d"] and all(0.0 <= c["auc"] <= 1.0 for c in report["pck3d"])
    for plot in ("pck_2d.png", "pck_3d.png"):
        assert cv2.imread(str(report_dir / plot)) is not None


def _locate(image: np.ndarray, color, near: np.ndarray, window: int, tol: float = 0.0) -> np.ndarray | None:
    """Centre of the drawn disk of ``color`` (within ``tol`` per channel) nearest ``near``: the peak of the
    distance transform of the colour mask (a disk is thicker than the bones drawn in the same colour)."""
    diff = np.abs(image.astype(int) - np.asarray(color, int)).max(axis=-1)
    mask = (diff <= tol).astype(np.uint8)
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    x0, y0 = int(near[0]) - window, int(near[1]) - window
    sub = dist[max(y0, 0) : y0 + 2 * window + 1, max(x0, 0) : x0 + 2 * window + 1]
    if sub.size == 0 or sub.max() < 1.5:
        return None
    peak = np.argwhere(sub >= sub.max() - 1e-6)
    y, x = peak.mean(axis=0)
    return np.array([x + max(x0, 0) + 0.5, y + max(y0, 0) + 0.5])


def _isolated(points: np.ndarray, min_dist: float) -> np.ndarray:
    d = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.eye(len(points)) * 1e9
    return d.min(axis=1) > min_dist


def test_overlay_puts_truth_and_estimate_where_the_numbers_say(evaluated):
    """Redraw a reported image at full scale, locate every isolated drawn joint of the ground truth (panel 1)
    and of the estimate (panel 2), and measure the errors from the picture: they match the report's."""
    root, report_dir, _ = evaluated
    report = json.loads((report_dir / "report.json").read_text())
    from handcap.inference.evaluation import load_annotated_set

    data = load_annotated_set(root)
    entry = next(e for e in report["images"] if e["file"] == SOURCE_IMAGES[0])
    row = next(h for h in report["hands"] if h["image"] == SOURCE_IMAGES[0])
    gt_image = next(im for im in data.images if im.path.name == "00000.jpg")
    pred = np.asarray(row["kp2d_pred"])
    score = ImageScore(gt_image, [Prediction(pred, None)], [HandScore(0, 0, row["kp2d_err_px"])])
    image = cv2.cvtColor(cv2.imread(str(gt_image.path)), cv2.COLOR_BGR2RGB)
    x0, y0, x1, y1 = entry["crop"]
    height = 2 * (y1 - y0)  # scale 2: disks of radius 5 (thicker than the 3 px bones)
    rows = [hand_row(score, 0, root)]
    view = composite(score, image, rows, height, entry["crop"])
    width = round((x1 - x0) * 2)
    gt_px = (gt_image.hands[0].kp2d - [x0, y0]) * 2
    est_px = (pred - [x0, y0]) * 2 + [width, 0]
    measured = []
    for k in np.flatnonzero(_isolated(gt_px, 14) & _isolated(est_px - [width, 0], 14)):
        g = _locate(view[:, :width], draw.GT_COLOR, gt_px[k], 4)
        e = _locate(view, draw.keypoint_color(k), est_px[k], 4)
        assert g is not None and np.linalg.norm(g - gt_px[k]) < 1.0, (k, g, gt_px[k])
        assert e is not None and np.linalg.norm(e - est_px[k]) < 1.0, (k, e, est_px[k])
        measured.append((k, np.linalg.norm((e - [width, 0]) - g) / 2))
    assert len(measured) >= 8
    for k, err in measured:
        assert err == pytest.approx(row["joint_err_px"][k], abs=1.0)
    # The saved JPEG holds the same drawing (at the report's own height): the ground-truth wrist is there.
    saved = cv2.cvtColor(cv2.imread(str(report_dir / entry["overlay"])), cv2.COLOR_BGR2RGB)
    s = saved.shape[0] / (y1 - y0)
    wrist = (gt_image.hands[0].kp2d[0] - [x0, y0]) * s
    found = _locate(saved, draw.GT_COLOR, wrist, 5, tol=70)
    assert found is not None and np.linalg.norm(found - wrist) < 2.0


def _row(err, box=100.0, side_gt=None, side_pred=None, fitted=None, finger=None) -> HandRow:
    joint = np.full(21, np.nan if err is None else err)
    if finger is not None:
        joint[1 + 4 * finger[0] : 5 + 4 * finger[0]] = finger[1]
    nan = float("nan")
    return HandRow(
        "x.jpg", 0, side_gt, side_pred, box, np.zeros((21, 2)), None,
        nan if err is None else float(np.nanmean(joint)), nan, nan, joint, np.full(21, nan), np.full(21, nan),
        fitted or {},
    )  # fmt: skip


def test_failure_categories():
    rows = [
        _row(5.0),
        _row(6.0),
        _row(None),  # missed
        _row(5.0, side_gt="left", side_pred="right"),  # wrong handedness
        _row(25.0, box=500.0),  # over 2 x median (5.5), but small for its box
        _row(4.0, box=18.0),  # 4 px on an 18 px hand: over 0.2 of the box
        _row(3.0, finger=(2, 30.0)),  # middle finger off by 30 px on a 100 px hand
        _row(5.0, fitted={"root_depth_err_mm": 80.0, "root_depth_err_pct": 20.0}),  # over 2 x median and 15 %
        _row(5.0, fitted={"root_depth_err_mm": 10.0, "root_depth_err_pct": 2.5}),
        _row(5.0, fitted={"root_depth_err_mm": 12.0, "root_depth_err_pct": 16.0}),  # a near hand: 16 % of 75 mm
    ]
    cats = categorise(rows)
    assert cats["missed hand"] == [rows[2]]
    assert cats["wrong handedness"] == [rows[3]]
    assert cats["large 2D error"] == [rows[4], rows[5]]  # median 5 px: over 10 px, or over 0.2 of the box
    assert cats["depth error"] == [rows[7], rows[9]]
    assert cats["finger error"] == [rows[6]]  # mean 8.1 px is fine, the middle finger is not
    assert rows[6].categories == ["finger error"] and rows[0].categories == []
    mild = [_row(5.0), _row(5.0), _row(4.0, finger=(0, 22.0))]
    assert categorise(mild)["finger error"] == [mild[2]]
    np.testing.assert_allclose(mild[2].finger_err_px, [22.0, 4.0, 4.0, 4.0, 4.0])


def test_report_without_images_or_3d(tmp_path):
    """A 2D-only result whose image file is gone: the report still writes, with a note and no 3D plot."""
    gt = GtHand("right", np.stack([np.linspace(10, 90, 21), np.linspace(20, 60, 21)], 1), np.ones(21, bool), None)
    image = GtImage(tmp_path / "images" / "gone.jpg", (120, 100), None, [gt])
    pred = Prediction(gt.kp2d + [3.0, 4.0], np.zeros((21, 3)))
    pred.side = "left"  # a predictor that reports sides (the ground truth says right)
    score = ImageScore(image, [pred], [HandScore(0, 0, 5.0, 1.0)])
    # what inference.fitting.evaluation.add_fitted_metrics leaves per ground-truth hand
    score.extra["fitted"] = [{"reproj_err_px_fitted": 4.25, "root_depth_err_mm": 90.0, "root_depth_err_pct": 20.0}]
    report = build_eval_report(summarize("tiny", [score]), tmp_path, tmp_path / "rep")
    assert report.metrics["kp2d_err_px"] == 5.0 and report.metrics["pa_mpjpe_mm_raw"] is None
    assert report.categories["wrong handedness"] == [("images/gone.jpg", 0)]
    assert report.categories["depth error"] == [("images/gone.jpg", 0)]  # 20 % of the true depth
    assert report.entries[0].hands[0].fitted["reproj_err_px_fitted"] == 4.25
    page = report.index.read_text()
    assert "<th>reproj_err_px_fitted</th>" in page and "<td>4.25</td>" in page
    assert report.plots == ["pck_2d.png"] and not report.pck3d
    assert any("gone.jpg" in n for n in report.notes)
    np.testing.assert_allclose(report.finger_err_px, 5.0)
    assert (tmp_path / "rep" / report.entries[0].overlay).is_file()


def test_unwritable_report_folder_keeps_the_numbers(tmp_path):
    from handcap.cli import CliError
    from handcap.cli.report import write_evaluation_report

    gt = GtHand(None, np.stack([np.linspace(10, 90, 21), np.linspace(20, 60, 21)], 1), np.ones(21, bool), None)
    score = ImageScore(GtImage(tmp_path / "a.jpg", (120, 100), None, [gt]), [], [HandScore(0, None)])
    (tmp_path / "taken").write_text("a file where the report folder should go")
    with pytest.raises(CliError, match=r"cannot write the report into .*taken.*\"detected_rate\": 0\.0"):
        write_evaluation_report(summarize("tiny", [score]), tmp_path, tmp_path / "taken")
