"""One capture request through every door: every field of ``core.request.CaptureRequest`` set to a value that
is not its default must come out of each door equal (CLI ``capture``, ``convert``, ``report``, ``farm``,
``blender -c`` and its chunk command, Blender's worker, the JSON of chunk files and capture info)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from handcap.core.request import CaptureRequest, CaptureRequestError, option_fields, option_flags

SOURCE = "/footage/clip.mp4"


def every_field() -> CaptureRequest:
    """A request with each option away from its default (a new option must be added here, see below)."""
    return CaptureRequest(
        SOURCE,
        frames=(12, 40),
        stride=3,
        hands=5,
        focal_mm=35.0,
        sensor_mm=23.6,
        focal_px=1234.5,
        fov_deg=61.25,
        principal=(640.5, 360.25),
        device="cpu",
        model="mano",
        mano_dir="/models/mano",
        mirrored=True,
        min_confidence=0.35,
        min_frames=4,
        detect="full",
        bridge_gaps=3,
        fit={"same_person": False, "iterations": (2, 4, 2), "w_2d": 0.75, "polish_iterations": 5},
    )


def test_the_request_here_sets_every_option():
    request = every_field()
    for f, flag in option_fields():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert getattr(request, f.name) != default, f"every_field() leaves {f.name} ({flag.name}) at its default"


def test_argument_list_and_json_round_trips():
    request = every_field()
    assert CaptureRequest.from_argv(SOURCE, request.to_argv()) == request
    assert CaptureRequest.from_json(json.loads(json.dumps(request.to_json()))) == request
    assert CaptureRequest(SOURCE).to_argv() == []  # defaults are not spelled out
    assert CaptureRequest.from_argv(SOURCE, []) == CaptureRequest(SOURCE)
    # the exact float comes back from its text
    odd = CaptureRequest(SOURCE, fov_deg=0.1 + 0.2, fit={"w_shape": 1 / 3})
    assert CaptureRequest.from_argv(SOURCE, odd.to_argv()) == odd


def _cli(argv):
    from handcap.cli import build_parser

    return build_parser().parse_args(argv)


@pytest.mark.parametrize(
    "command",
    [
        ["capture", SOURCE, "-o", "take.npz"],
        ["convert", SOURCE, "-o", "out"],
        ["report", SOURCE, "-o", "report"],
        ["farm", SOURCE, "-o", "out"],
    ],
    ids=lambda c: c[0],
)
def test_every_cli_command_reads_the_same_request(command):
    """The command line's doors, with the CLI's own checks (fit option names via torch's FitOptions)."""
    from handcap.cli.capture import options_from_args

    request = every_field()
    args = _cli([*command, *request.to_argv()])
    assert options_from_args(SOURCE, args) == request


def test_blender_command_line_and_its_chunk_command_carry_the_request():
    from handcap.blender_cli import batch_request, build_parser

    request = every_field()
    args = build_parser("blender -c handcap").parse_args(["convert", SOURCE, "-o", "out", *request.to_argv()])
    assert dataclasses.replace(batch_request(args), source=SOURCE) == request
    # the chunk command the worker runs for `convert --chunk-out` inside Blender
    chunk_args = _cli(["convert", SOURCE, "-o", "out", "--chunk-out", "c.npz", *batch_request(args).to_argv()])
    assert CaptureRequest.from_args(SOURCE, chunk_args) == request


def test_the_worker_command_line_is_the_request(tmp_path):
    """Blender's worker: the job's argv (after asking the CLI its capabilities) parses back to the request."""
    from handcap.operators.interpreter import Interpreter
    from handcap.operators.worker import cli_capabilities, request_argv

    request = every_field()
    interpreter = Interpreter(Path(sys.executable), "blender")
    caps = cli_capabilities(interpreter)
    assert caps["capture_options"] == option_flags() and caps["progress_json"] is True
    argv = request_argv(request, tmp_path / "capture.npz", interpreter)
    assert argv[:4] == ["capture", SOURCE, "-o", str(tmp_path / "capture.npz")] and argv[-1] == "--progress-json"
    args = _cli(argv)
    assert CaptureRequest.from_args(args.input, args) == request


def test_chunk_files_and_capture_info_keep_the_request():
    """The farm's JSON (chunk files) and the capture's info (every fit option spelled out) read back equal."""
    from handcap.inference.capture_job import fit_options, options_info
    from handcap.inference.chunks import capture_options_from_json

    request = every_field()
    assert capture_options_from_json(request.to_json()) == request
    info = json.loads(json.dumps(options_info(request, fit_options(request))))
    assert info["fit"]["same_person"] is False and info["fit"]["iterations"] == [2, 4, 2]
    assert len(info["fit"]) > len(request.fit)  # the defaults are recorded too
    back = capture_options_from_json(info)  # every fit option explicit: the same fit
    assert dataclasses.replace(back, fit=request.fit) == request and fit_options(back) == fit_options(request)


def test_a_fit_options_object_is_kept_as_its_overrides():
    from handcap.inference.fitting.fit import FitOptions

    request = CaptureRequest(SOURCE, fit=FitOptions(same_person=False, polish_iterations=4, device="cuda"))
    assert request.fit == {"polish_iterations": 4, "same_person": False}  # the device is the capture's own


def test_any_number_of_hands_up_to_the_search_limit_and_gap_bridging():
    request = CaptureRequest.from_argv(SOURCE, ["--hands", "10", "--bridge-gaps", "0"])
    assert (request.hands, request.bridge_gaps) == (10, 0)
    assert CaptureRequest(SOURCE).bridge_gaps == 8 and CaptureRequest.from_argv(SOURCE, request.to_argv()) == request


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--frames", "5:2"], "empty frame range"),
        (["--frames=-3:"], "negative frames are refused"),
        (["--fit", "polish_iterations"], "NAME=VALUE"),
        (["--fit", "w_2d=lots"], "bad value for fit option w_2d"),
        (["--mano-dir", "/m"], "--mano-dir is only used with --model mano"),
        (["--model", "mano"], "--mano-dir"),
        (["--min-confidence", "1.5"], "between 0 and 1"),
        (["--fov", "nan"], "finite"),
        (["--hands", "11"], r"hands must be a whole number 1\.\.10"),
        (["--hands", "0"], r"hands must be a whole number 1\.\.10"),
        (["--bridge-gaps", "-1"], "bridge_gaps must be a whole number of frames >= 0"),
    ],
)
def test_bad_options_are_named(argv, message):
    with pytest.raises(CaptureRequestError, match=message):
        CaptureRequest.from_argv(SOURCE, argv)


def test_an_unknown_fit_option_is_refused_by_the_cli_before_any_work():
    from handcap.cli import CliError
    from handcap.cli.capture import options_from_args

    args = _cli(["capture", SOURCE, "-o", "t.npz", "--fit", "polish_iteration=3"])
    with pytest.raises(CliError, match="NAME one of"):
        options_from_args(SOURCE, args)
