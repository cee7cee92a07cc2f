"""The hand's identity in a fit: the shape beta plus small corrections of the palm's rest joints, one per clip.

A MANO-style palm is rigid and its joints follow beta's 10 population directions, so the detector's wrist,
thumb CMC and knuckles of one particular hand sit a few millimetres off the model's joints in every frame
(on two_hands_counting the left hand's image-only fit leaves its palm points 4.6 px off, slowly varying,
lag-1 autocorrelation about 0.9: a misfit of the skeleton, not detector noise). Letting those six rest joints
move a little within the clip calibrates the skeleton to the hand seen; the offsets are stored with the fit
(``HandFit.joint_offsets``) and the capture's ``rest_joints`` include them, so the armature is built on the
calibrated skeleton. Their prior is per clip, not per frame: a single photo cannot move them, a long clip can.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...core.keypoints import NUM_BETAS, NUM_JOINTS

# MANO order: wrist, index1, middle1, pinky1, ring1, thumb1 (the thumb's CMC): the joints that carry the palm
OFFSET_JOINTS = (0, 1, 4, 7, 10, 13)


@dataclass(frozen=True)
class IdentityLayout:
    """Layout of the identity vector s = [beta (10), offsets of ``joints`` (3 each, metres, template axes)].

    max_beta: |beta| bound (population standard deviations); max_offset_m: bound of each offset coordinate
    (0 switches the offsets off: s is then beta alone).
    """

    max_beta: float
    max_offset_m: float
    joints: tuple[int, ...] = OFFSET_JOINTS

    @property
    def num_offsets(self) -> int:
        return 3 * len(self.joints) if self.max_offset_m > 0 else 0

    @property
    def size(self) -> int:
        return NUM_BETAS + self.num_offsets

    def split(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, size) -> beta (N, 10) and rest-joint offsets (N, 16, 3) (None when the offsets are off)."""
        beta = s[:, :NUM_BETAS]
        if not self.num_offsets:
            return beta, None
        off = s.new_zeros(s.shape[0], NUM_JOINTS, 3)
        off[:, list(self.joints)] = s[:, NUM_BETAS:].reshape(-1, len(self.joints), 3)
        return beta, off

    def bound(self, like: torch.Tensor) -> torch.Tensor:
        """(size,) upper bound of |s| per coordinate."""
        b = like.new_full((self.size,), self.max_offset_m)
        b[:NUM_BETAS] = self.max_beta
        return b

    def prior_diag(self, shape_weight: float, offset_weight: float, hand_scale_m: float, like: torch.Tensor):
        """(size,) diagonal of the quadratic identity prior: shape_weight |beta|^2 + offset_weight |o / scale|^2."""
        d = like.new_full((self.size,), offset_weight / hand_scale_m**2)
        d[:NUM_BETAS] = shape_weight
        return d

    def initial(self, beta: torch.Tensor) -> torch.Tensor:
        """Identity vector (size,) of a shape beta (10,) with zero offsets."""
        return torch.cat([beta, beta.new_zeros(self.num_offsets)])
