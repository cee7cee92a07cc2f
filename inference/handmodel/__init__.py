"""Hand models for fitting: the built-in model and the user's MANO, as differentiable torch modules."""

from ...core.handmodel import HandModelError
from .model import HandModel, HandOutput, load_hand_model, rodrigues

__all__ = ["HandModel", "HandModelError", "HandOutput", "load_hand_model", "rodrigues"]
