"""The capture request: what to capture and how, as one plain dataclass every door shares (no torch, no bpy).

Each option field carries its command-line flag, help text, and how it is parsed from and written back to text
(``Flag`` in the field's metadata). That one definition makes:

* the CLI's arguments (``add_arguments``; ``capture``, ``convert``, ``report``, ``farm``, ``blender -c``),
* the request from parsed arguments (``from_args``) and from an argument list (``from_argv``),
* the arguments back from a request (``to_argv``: the worker's command line, convert inside Blender),
* the JSON form stored in chunk files and capture info (``to_json`` / ``from_json``).

Adding a capture option is one new field here plus the code that uses it (``inference/capture_job.py``); every
door, Blender's worker included, then carries it. ``tests/test_request.py`` round-trips every field.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass

#: Hand models a capture can fit.
HAND_MODELS = ("builtin", "mano")
#: Palm search modes (inference/multiscale.py): "tiled", photos searched through the full view plus tiles and a
#: zoomed-out view, videos through the full view and the tracker; "tiled-video", also tiles around a lost hand in
#: videos; "full", the full view only, as MediaPipe looks.
DETECT_MODES = ("tiled", "tiled-video", "search", "full")


#: Most hands one capture holds: the tiled palm search's limit per photo (``inference.multiscale``).
MAX_HANDS = 10
#: Gaps bridged by default, in captured frames: 8 frames are about a quarter second at 30 fps, shorter than a
#: hand is usually hidden for on purpose (a longer gap is left unkeyed rather than invented).
DEFAULT_BRIDGE_GAPS = 8


class CaptureRequestError(ValueError):
    """A capture option that cannot work (the message names it and says why)."""


@dataclass(frozen=True)
class Flag:
    """How one request field appears on the command line.

    Attributes:
        name: the flag ("--stride").
        help: one line for ``--help``.
        metavar: placeholder in ``--help`` (None: argparse's default).
        parse: text -> value (raises CaptureRequestError with the reason); None for a switch.
        render: value -> text, the inverse of ``parse`` (``to_argv``).
        choices: the allowed values, when a closed set.
        repeat: the flag may be given several times (``--fit``); the field is then a mapping.
    """

    name: str
    help: str
    metavar: str | None = None
    parse: Callable[[str], object] | None = None
    render: Callable[[object], str] = str
    choices: tuple = ()
    repeat: bool = False


def _option(default, flag: Flag, factory=None):
    meta = {"flag": flag}
    return field(default_factory=factory, metadata=meta) if factory else field(default=default, metadata=meta)


# --------------------------------------------------------------------------- text <-> value


def parse_frames(text: str) -> tuple[int | None, int | None]:
    """ "A:B", "A:" or ":B" -> (start, stop), stop exclusive, frames counted from 0."""
    parts = text.split(":")
    if len(parts) != 2:
        raise CaptureRequestError(f"expected A:B (e.g. 100:200), got {text!r}")
    try:
        start, stop = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise CaptureRequestError(f"frame numbers must be integers, got {text!r}") from None
    _check_frames((start, stop), text)
    return start, stop


def _check_frames(frames, shown) -> None:
    start, stop = frames
    if (start or 0) < 0 or (stop or 0) < 0:
        raise CaptureRequestError(f"frame numbers count from 0; negative frames are refused, got {shown!r}")
    if start is not None and stop is not None and stop <= start:
        raise CaptureRequestError(f"empty frame range {shown!r} (B must be greater than A)")


def render_frames(frames) -> str:
    start, stop = frames
    return f"{'' if start is None else int(start)}:{'' if stop is None else int(stop)}"


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CaptureRequestError(f"expected a whole number, got {text!r}") from None


def _parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CaptureRequestError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise CaptureRequestError(f"expected a finite number, got {text!r}")
    return value


def _render_float(value) -> str:
    return repr(float(value))  # repr: the exact float comes back from the text


def _parse_point(text: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise CaptureRequestError(f"expected CX,CY in pixels, got {text!r}")
    return tuple(_parse_float(p) for p in parts)


def _render_point(value) -> str:
    return ",".join(_render_float(v) for v in value)


def parse_fit_pair(text: str) -> tuple[str, object]:
    """ "name=value" -> (name, value): true/false -> bool, "3,6,3" -> tuple of ints, else int or float.

    Only the syntax is checked here (no torch): the fit (``FitOptions.parse``) checks the name and the value's
    type when the capture runs, and the CLI does so before any frame is read."""
    name, sep, value = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name.isidentifier():
        raise CaptureRequestError(f"fit options are NAME=VALUE (e.g. polish_iterations=3), got {text!r}")
    return name, _fit_value(value.strip(), name)


def _fit_value(text: str, name: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        if "," in text:
            return tuple(int(v) for v in text.split(","))
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        why = "a number, true/false or N,N,N"
        raise CaptureRequestError(f"bad value for fit option {name}: {text!r} (expected {why})") from None
    if not math.isfinite(value):
        raise CaptureRequestError(f"bad value for fit option {name}: {text!r} (not finite)")
    return value


def render_fit_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(str(int(v)) for v in value)
    return _render_float(value) if isinstance(value, float) else str(int(value))


def _fit_overrides(fit) -> dict[str, object]:
    """A mapping of fit option overrides, or a fit options dataclass (its fields that differ from their
    defaults; the device is the capture's own), as name -> value."""
    if fit is None:
        return {}
    if is_dataclass(fit) and not isinstance(fit, type):
        out = {}
        for f in fields(fit):
            default = f.default if f.default is not MISSING else MISSING
            value = getattr(fit, f.name)
            if f.name != "device" and value != default:
                out[f.name] = tuple(value) if isinstance(value, list) else value
        return out
    if not isinstance(fit, Mapping):
        raise CaptureRequestError(f"fit must be a mapping of fit options or FitOptions, got {type(fit).__name__}")
    return {str(k): tuple(v) if isinstance(v, list) else v for k, v in fit.items() if k != "device"}


# --------------------------------------------------------------------------- the request


@dataclass
class CaptureRequest:
    """What to capture and how: one video, photo, image folder or pattern -> one capture.

    Attributes:
        source: video, photo, image folder or pattern (anything ``inference.sources.open_source`` reads).
        frames: (start, stop) source frame range, stop exclusive, either may be None; None = all.
        stride: use every stride-th frame of the range.
        hands: most hands to capture, 1..MAX_HANDS (the tiled palm search's limit per photo); several people's
            hands give one track each, keyed "right", "left", "right_2", ...
        focal_mm, sensor_mm (mm), focal_px (pixels), fov_deg (horizontal, degrees), principal ((cx, cy) pixels):
            the camera (see ``inference.camera``); none = the focal length estimated from the hands.
        device: "auto" (CUDA when available), "cpu", "cuda", "cuda:N".
        model: hand model, "builtin" or "mano"; mano_dir: folder with MANO_RIGHT.pkl / MANO_LEFT.pkl.
        mirrored: the footage is a mirrored selfie view (swaps the detected sides).
        min_confidence: a hand track is dropped (with a warning) when even its best frame's confidence
            (landmark presence x handedness agreement, 0..1) is below this. Real hands score above 0.9 on the
            shared photos; a crop that reads as the other hand's duplicate scores about 0.04.
        min_frames: a hand track seen in fewer of the captured frames is dropped (with a warning): a hand
            that flashes into a few frames of a long clip is more often a misdetection than a hand to animate.
        detect: palm search, one of DETECT_MODES: "tiled" finds small and close-up hands in photos,
            "tiled-video" also searches tiles around a lost hand in videos (slower while one is missing), "search"
            also reads a grid of crops with the landmark network in photos (gloved hands, hands behind an object;
            4-8x slower, and 2 of 73 hand-free crops give a false hand), "full" looks at the whole frame only.
        bridge_gaps: a track's gaps of at most this many captured frames between two seen stretches are filled
            from both sides (``inference.fitting.gaps``) and flagged as bridged; longer gaps stay unkeyed; 0 = off.
        fit: overrides of the fit's options, name -> value (``FitOptions`` in inference/fitting/fit.py, e.g.
            {"same_person": False} for two people's hands); a FitOptions is accepted and kept as its overrides.
    """

    source: str = ""
    frames: tuple[int | None, int | None] | None = _option(
        None,
        Flag("--frames", "source frames A..B-1, 0-based (default all)", "A:B", parse_frames, render_frames),
    )
    stride: int = _option(1, Flag("--stride", "use every N-th frame (default 1)", "N", _parse_int))
    hands: int = _option(
        2,
        Flag("--hands", f"most hands to capture, 1..{MAX_HANDS} (default 2; more for several people)", "N", _parse_int),
    )
    focal_mm: float | None = _option(
        None, Flag("--focal-mm", "camera focal length in mm (with --sensor-mm)", "F", _parse_float, _render_float)
    )
    sensor_mm: float | None = _option(
        None, Flag("--sensor-mm", "camera sensor width in mm (default 36)", "S", _parse_float, _render_float)
    )
    focal_px: float | None = _option(
        None, Flag("--focal-px", "camera focal length in pixels", "F", _parse_float, _render_float)
    )
    fov_deg: float | None = _option(
        None,
        Flag(
            "--fov",
            "horizontal field of view in degrees (no camera option: the focal length is estimated from the hands)",
            "DEG",
            _parse_float,
            _render_float,
        ),
    )
    principal: tuple[float, float] | None = _option(
        None,
        Flag(
            "--principal",
            "camera principal point in pixels (default the image centre)",
            "CX,CY",
            _parse_point,
            _render_point,
        ),
    )
    device: str = _option(
        "auto", Flag("--device", "auto (CUDA if available), cpu, cuda, cuda:N (default auto)", None, str)
    )
    model: str = _option("builtin", Flag("--model", "hand model (default builtin)", None, str, choices=HAND_MODELS))
    mano_dir: str | None = _option(
        None, Flag("--mano-dir", "folder with your MANO_RIGHT.pkl / MANO_LEFT.pkl (--model mano)", "DIR", str)
    )
    mirrored: bool = _option(False, Flag("--mirrored", "the footage is a mirrored selfie view (swaps sides)"))
    min_confidence: float = _option(
        0.2,
        Flag(
            "--min-confidence",
            "drop a hand whose best frame's confidence (0..1) is below C (default 0.2)",
            "C",
            _parse_float,
            _render_float,
        ),
    )
    min_frames: int = _option(
        1,
        Flag("--min-frames", "drop a hand seen in fewer than N of the captured frames (default 1)", "N", _parse_int),
    )
    detect: str = _option(
        "tiled",
        Flag(
            "--detect",
            "palm search: tiled (photos: full view, tiles and a zoomed-out view; default), tiled-video (also tiles "
            "around a lost hand in videos), search (photos: also a landmark-network search for gloved or hidden "
            "hands; slower, may add a false hand) or full (the full view only)",
            None,
            str,
            choices=DETECT_MODES,
        ),
    )
    bridge_gaps: int = _option(
        DEFAULT_BRIDGE_GAPS,
        Flag(
            "--bridge-gaps",
            f"fill a hand's gaps of up to N frames from both sides (default {DEFAULT_BRIDGE_GAPS}; 0 = off)",
            "N",
            _parse_int,
        ),
    )
    fit: dict = _option(
        None,
        Flag(
            "--fit",
            "a fit option (FitOptions in inference/fitting/fit.py), e.g. --fit polish_iterations=3 or "
            "--fit same_person=false (two people's hands); repeatable",
            "NAME=VALUE",
            parse_fit_pair,
            repeat=True,
        ),
        factory=dict,
    )

    def __post_init__(self):
        self.source = str(self.source)
        self.fit = _fit_overrides(self.fit)
        for name in ("frames", "principal"):
            if getattr(self, name) is not None:
                setattr(self, name, tuple(getattr(self, name)))

    def validate(self) -> None:
        """Raise CaptureRequestError naming the first option that cannot work."""
        if isinstance(self.hands, bool) or not isinstance(self.hands, int) or not 1 <= self.hands <= MAX_HANDS:
            raise CaptureRequestError(f"hands must be a whole number 1..{MAX_HANDS}, got {self.hands!r}")
        if isinstance(self.bridge_gaps, bool) or not isinstance(self.bridge_gaps, int) or self.bridge_gaps < 0:
            raise CaptureRequestError(f"bridge_gaps must be a whole number of frames >= 0, got {self.bridge_gaps!r}")
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 1:
            raise CaptureRequestError(f"stride must be a positive integer, got {self.stride!r}")
        if self.frames is not None:
            if len(self.frames) != 2 or not all(v is None or isinstance(v, int) for v in self.frames):
                raise CaptureRequestError(f"frames must be (start, stop) whole numbers or None, got {self.frames!r}")
            _check_frames(self.frames, render_frames(self.frames))
        if self.model not in HAND_MODELS:
            raise CaptureRequestError(f"model must be 'builtin' or 'mano', got {self.model!r}")
        if not (isinstance(self.min_confidence, int | float) and 0.0 <= self.min_confidence <= 1.0):
            raise CaptureRequestError(f"min_confidence must be between 0 and 1, got {self.min_confidence!r}")
        if isinstance(self.min_frames, bool) or not isinstance(self.min_frames, int) or self.min_frames < 1:
            raise CaptureRequestError(f"min_frames must be a positive integer, got {self.min_frames!r}")
        if self.detect not in DETECT_MODES:
            raise CaptureRequestError(f"detect must be one of {', '.join(DETECT_MODES)}, got {self.detect!r}")
        if self.model == "mano" and not self.mano_dir:
            raise CaptureRequestError(
                "the MANO model needs the folder holding MANO_RIGHT.pkl / MANO_LEFT.pkl (--mano-dir)"
            )

    # -- command line ---------------------------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser) -> None:
        """Every option's flag on an argparse parser or argument group (dest = the field's name)."""
        for f, flag in option_fields():
            if flag.parse is None:
                parser.add_argument(flag.name, dest=f.name, action="store_true", help=flag.help)
                continue
            kwargs = {"dest": f.name, "help": flag.help, "metavar": flag.metavar}
            if flag.choices:
                kwargs["choices"] = flag.choices
            if flag.repeat:  # kept as text; from_args parses each pair
                parser.add_argument(flag.name, action="append", default=[], **kwargs)
            else:
                parser.add_argument(flag.name, type=_argparse_type(flag), default=f.default, **kwargs)

    @classmethod
    def from_args(cls, source, args: argparse.Namespace) -> CaptureRequest:
        """The checked request from arguments parsed by ``add_arguments`` (CaptureRequestError names a bad one)."""
        values = {}
        for f, flag in option_fields():
            value = getattr(args, f.name, f.default if f.default is not MISSING else f.default_factory())
            if flag.repeat:
                value = dict(parse_fit_pair(p) for p in value or [])
            values[f.name] = value
        if values.get("mano_dir") and values.get("model") != "mano":
            raise CaptureRequestError("--mano-dir is only used with --model mano")
        request = cls(source=str(source), **values)
        request.validate()
        return request

    @classmethod
    def from_argv(cls, source, argv: Sequence[str]) -> CaptureRequest:
        """The request from option arguments alone (``to_argv``'s inverse)."""
        parser = argparse.ArgumentParser(prog="capture request", add_help=False, exit_on_error=False)
        cls.add_arguments(parser)
        try:
            args = parser.parse_args(list(argv))
        except (argparse.ArgumentError, SystemExit) as exc:
            raise CaptureRequestError(f"bad capture arguments {list(argv)}: {exc}") from None
        return cls.from_args(source, args)

    def to_argv(self) -> list[str]:
        """The options that differ from their defaults as command-line arguments (``from_argv``'s inverse)."""
        out: list[str] = []
        for f, flag in option_fields():
            value = getattr(self, f.name)
            if flag.repeat:
                out += [a for name, v in value.items() for a in (flag.name, f"{name}={render_fit_value(v)}")]
            elif value == (f.default if f.default is not MISSING else f.default_factory()):
                continue
            elif flag.parse is None:
                out.append(flag.name)
            else:
                out += [flag.name, flag.render(value)]
        return out

    def argv(self, output, progress_json: bool = False) -> list[str]:
        """The whole ``python -m handcap capture`` command line (after ``-m handcap``) writing ``output``."""
        return ["capture", self.source, "-o", str(output), *self.to_argv()] + (
            ["--progress-json"] if progress_json else []
        )

    # -- JSON -----------------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        """Every field as JSON values (tuples become lists)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "fit":
                value = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> CaptureRequest:
        """``to_json``'s inverse; an unknown field (another HandCap version's) raises CaptureRequestError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise CaptureRequestError(f"unknown capture option(s) {', '.join(unknown)} (another HandCap version?)")
        return cls(**dict(data))


def option_fields():
    """(dataclass field, Flag) of every request option, in declaration order."""
    return [(f, f.metadata["flag"]) for f in fields(CaptureRequest) if "flag" in f.metadata]


def option_flags() -> list[str]:
    """Every option's command-line flag (the CLI's ``--capabilities`` lists them)."""
    return [flag.name for _, flag in option_fields()]


def _argparse_type(flag: Flag):
    def convert(text: str):
        try:
            return flag.parse(text)
        except CaptureRequestError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = flag.name.lstrip("-")
    return convert
