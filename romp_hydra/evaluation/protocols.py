"""Evaluation protocols: which joints are compared, how people are matched, what is reported.

ROMP's 3DPW protocol 2/3 (romp/eval.py): GT `kp_3d` mapped 54 -> LSP-14; prediction = the H36M regressor applied
to the predicted mesh, first 14 joints (LSP order); both aligned on the midpoint of the LSP hips; MPJPE and
PA-MPJPE in mm, PVE in mm between GT and predicted vertices. ROMP sampled each GT person's parameters at its GT
centre cell (`match_preds_to_gts_for_supervision=False`); its author describes evaluation as "match each GT with
the closest prediction" (issue #471) - the default here, with the GT-centre cell as the alternative.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

JOINT_SETS = ("lsp14", "smpl54", "h36m17")
PRED_JOINTS = ("h36m17", "joints54")
MATCHING = ("nearest_center", "gt_center")


@dataclass(frozen=True)
class Protocol:
    """How predictions are compared with ground truth.

    joints: lsp14 (3DPW, ROMP), smpl54 (our 54-joint set; synthetic data), h36m17 (CMU Panoptic, GT in H36M-17).
    pred_joints: h36m17 = H36M regressor on the predicted mesh (ROMP), joints54 = the 54-joint set.
    matching: nearest_center (each GT takes the closest detected centre) or gt_center (its own centre cell).
    """

    name: str = "custom"
    joints: str = "lsp14"
    pred_joints: str = "h36m17"
    matching: str = "nearest_center"
    one_to_one: bool = False
    center_threshold: float = 0.2
    top_k: int = 64
    detection_radius_cells: float = 2.0
    compute_pve: bool = True
    pck_threshold_mm: float = 150.0
    group_by: str = "dataset"  # dataset | sequence (parent folder of the image)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, allowed in (("joints", JOINT_SETS), ("pred_joints", PRED_JOINTS), ("matching", MATCHING)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"protocol.{key}={getattr(self, key)!r}: use one of {', '.join(allowed)}")
        if self.group_by not in ("dataset", "sequence"):
            raise ValueError(f"protocol.group_by={self.group_by!r}: use dataset or sequence")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> "Protocol":
        values = dict(values or {})
        known = {k: values.pop(k) for k in list(values) if k in cls.__dataclass_fields__}
        return cls(**known, extra=values)

    def describe(self) -> dict[str, str]:
        """Spelled-out protocol, logged as params next to the metrics."""
        return {
            "protocol": self.name,
            "protocol.joints": self.joints,
            "protocol.pred_joints": self.pred_joints,
            "protocol.matching": self.matching + (" (one-to-one)" if self.one_to_one else ""),
            "protocol.center_threshold": f"{self.center_threshold:g}",
            "protocol.alignment": "hip midpoint" if self.joints != "h36m17" else "pelvis (joint 0)",
        }
