"""Per-hand tracks over a clip: moved to ``inference.tracks`` (named steps, any number of hands); the names
stay importable from here for existing callers."""

from ..tracks import NoHandError, Observation, TrackedHand, TrackSet, build_tracks

__all__ = ["NoHandError", "Observation", "TrackedHand", "TrackSet", "build_tracks"]
