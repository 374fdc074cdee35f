"""Evaluation protocols: which joints are compared, how they are aligned, how people are matched.

A `Protocol` is built from a config node (``conf/protocol/*.yaml`` for ``python -m romp_hydra.evaluate``,
``val.protocol`` for validation during training) and turned into a `JointComparison`: the GT rows of our
54-joint set, the predicted rows (of ``joints54`` or of the H36M-regressed ``joints_h36m17``) and the
alignment root.

ROMP's 3DPW protocol 2/3 (romp/eval.py): GT `kp_3d` mapped 54 -> LSP-14; prediction = the H36M regressor
applied to the predicted mesh, first 14 rows (ROMP's H36M_TO_J17 puts them in LSP order, its neck and head
standing in for LSP's neck and head top); both aligned on the midpoint of the LSP hips; MPJPE and PA-MPJPE in
mm, PVE in mm between GT and predicted vertices. ROMP sampled each GT person's parameters at its GT centre
cell (`match_preds_to_gts_for_supervision=False`); its author describes evaluation as "match each GT with the
closest prediction" (issue #471) - the default here, with the GT-centre cell as the alternative.

CMU Panoptic (romp/test.py): the 17 H36M joints, centred on the pelvis. The body model's ``joints_h36m17`` are
in ROMP's LSP-first order (pelvis at index 14, `body.joint_sets.H36M_17`), so the comparison puts the GT in
that order too and aligns on index 14, not 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from romp_hydra.body.joint_sets import (
    H36M_17,
    JOINT54,
    LSP_14,
    MPI_INF_TEST_17,
    MUPOTS_17,
    SMPL_ALL_54,
    JointNames,
)
from romp_hydra.config.errors import ConfigError
from romp_hydra.models.parser import MATCH_MODES

KINDS = ("mesh3d", "keypoint_ap")
# Compared joint sets: a name -> the joints (in our naming), in the order they are compared.
JOINT_SETS: dict[str, JointNames] = {
    "lsp14": LSP_14,
    "h36m17": H36M_17,  # ROMP's LSP-first H36M order: pelvis at 14
    "mupots17": MUPOTS_17,
    "mpiinf17": MPI_INF_TEST_17,
    "smpl54": SMPL_ALL_54,
}
PRED_JOINTS = {"h36m17": "joints_h36m17", "joints54": "joints54"}
ALIGNMENTS = ("auto", "hips", "pelvis")
METRICS = ("mpjpe", "pa_mpjpe", "pve", "pck3d", "auc")
GROUP_BY = ("dataset", "sequence")
KEYPOINT_SCORES = ("center", "constant")
# The alignment `auto` picks: hips for the LSP-style sets (ROMP's 3DPW protocol), the pelvis for the
# H36M-style ones.
AUTO_ALIGN = {
    "lsp14": "hips",
    "smpl54": "hips",
    "h36m17": "pelvis",
    "mupots17": "pelvis",
    "mpiinf17": "pelvis",
}
ROOT_NAMES = {"hips": ("R_Hip", "L_Hip"), "pelvis": ("Pelvis",)}


@dataclass(frozen=True)
class JointComparison:
    """Rows to compare: ``gt = kp3d54[:, gt_index]`` against ``pred = people[pred_key][:, pred_index]``.

    ``root`` indexes the compared joints; the mean of those joints is subtracted from both before MPJPE / PCK.
    """

    names: tuple[str, ...]
    gt_index: tuple[int, ...]
    pred_key: str
    pred_index: tuple[int, ...]
    root: tuple[int, ...]
    root_names: tuple[str, ...]


@dataclass(frozen=True)
class Protocol:
    """How predictions are compared with ground truth.

    kind: ``mesh3d`` (match GT people to detections, score 3D joints and meshes) or ``keypoint_ap``
        (CrowdPose: every detection is a person, 2D keypoints scored by OKS-based AP; see
        `evaluation.crowdpose`).
    joints: compared joint set, one of `JOINT_SETS` (lsp14: 3DPW; h36m17: CMU Panoptic; mupots17 / mpiinf17:
        MuPoTS-3D / MPI-INF-3DHP, the joints of theirs that exist in our 54-joint set; smpl54: synthetic
        data).
    pred_joints: ``h36m17`` = the H36M regressor on the predicted mesh (ROMP), ``joints54`` = our 54-joint
        set.
    align: root for MPJPE and PCK: ``hips`` (mean of R_Hip and L_Hip), ``pelvis``, or ``auto`` (by joint set).
    matching: ``nearest_center`` (each GT takes the closest detected centre of its image) or ``gt_center``
        (its own centre cell; nobody is missed). ``one_to_one``: Hungarian assignment instead.
    center_threshold, top_k: centre-peak detection (ROMP: 0.2, 64).
    detection_radius_cells: a detection within this many map cells of a GT centre is a true positive (for the
        detection precision / recall, which ROMP did not report).
    metrics: any of mpjpe, pa_mpjpe, pve, pck3d, auc.
    pck_threshold_mm: PCK3D threshold (150 mm for MuPoTS-3D / MPI-INF-3DHP).
    group_by: per-group table: ``dataset`` or ``sequence`` (the image's folder, or the last match of
        ``group_pattern``'s first group in the image path, e.g. ``(haggling|mafia|ultimatum|pizza)``).
    report_group_mean: also report every metric as the mean of the group means (CMU Panoptic's headline
        number).
    keypoint_score: ``keypoint_ap`` only: ranking score of a detection, its centre-map value (``center``) or 1
        for everybody (``constant``, ROMP's choice).
    max_detections: ``keypoint_ap`` only: detections per image that are scored (CrowdPose: 20).
    """

    name: str = "custom"
    kind: str = "mesh3d"
    joints: str = "lsp14"
    pred_joints: str = "h36m17"
    align: str = "auto"
    matching: str = "nearest_center"
    one_to_one: bool = False
    center_threshold: float = 0.2
    top_k: int = 64
    detection_radius_cells: float = 2.0
    metrics: tuple[str, ...] = ("mpjpe", "pa_mpjpe", "pve")
    pck_threshold_mm: float = 150.0
    group_by: str = "dataset"
    group_pattern: str | None = None
    report_group_mean: bool = False
    keypoint_score: str = "center"
    max_detections: int = 20

    def __post_init__(self) -> None:
        for key, allowed in (
            ("kind", KINDS),
            ("joints", tuple(JOINT_SETS)),
            ("pred_joints", tuple(PRED_JOINTS)),
            ("align", ALIGNMENTS),
            ("matching", MATCH_MODES),
            ("group_by", GROUP_BY),
            ("keypoint_score", KEYPOINT_SCORES),
        ):
            value = getattr(self, key)
            if value not in allowed:
                raise ConfigError(
                    f"protocol.{key}", value, "unknown value", f"use one of {', '.join(allowed)}"
                )
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ConfigError(
                "protocol.metrics",
                list(self.metrics),
                f"unknown metric(s) {', '.join(unknown)}",
                f"choose from {', '.join(METRICS)}",
            )
        if self.group_pattern is not None:
            try:
                groups = re.compile(self.group_pattern).groups
            except re.error as err:
                raise ConfigError(
                    "protocol.group_pattern",
                    self.group_pattern,
                    f"not a regular expression ({err})",
                    "write a Python regex with one group, e.g. '(TS\\d+)'",
                ) from err
            if groups < 1:
                raise ConfigError(
                    "protocol.group_pattern",
                    self.group_pattern,
                    "has no capture group",
                    "put the part naming the group in parentheses, e.g. '(TS\\d+)'",
                )
        for key in ("top_k", "max_detections"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(
                    f"protocol.{key}",
                    getattr(self, key),
                    "must be at least 1",
                    f"set protocol.{key} to a positive integer",
                )
        if self.kind == "mesh3d":
            self.comparison()  # fail now, not after the first batch

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, where: str = "protocol") -> Protocol:
        """Build from a config node; unknown keys are an error (a typo would otherwise be ignored silently).

        Args:
            values: the node (DictConfig or dict); None gives the defaults.
            where: the node's config path, for error messages (``protocol`` or ``val.protocol``).
        """
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(k for k in values if k not in known)
        if unknown:
            raise ConfigError(
                f"{where}.{unknown[0]}",
                values[unknown[0]],
                "is not a protocol setting",
                f"remove it; protocol settings are {', '.join(sorted(known))}",
            )
        if "metrics" in values:
            values["metrics"] = tuple(str(m) for m in values["metrics"])
        try:
            return cls(**values)
        except ConfigError as err:
            raise ConfigError(
                err.key.replace("protocol", where, 1), err.value, err.problem, err.fix
            ) from None

    # -- joints ----------------------------------------------------------------------------------------------
    @property
    def alignment(self) -> str:
        """The resolved alignment: ``hips`` or ``pelvis``."""
        return AUTO_ALIGN[self.joints] if self.align == "auto" else self.align

    def comparison(self) -> JointComparison:
        """Which GT and predicted rows are compared, and the root they are aligned on.

        Joints of the set that our 54-joint layout lacks (MPI-INF-3DHP's misaligned head top, thorax and head)
        are left out: the data layer never carries them.
        """
        names = tuple(name for name in JOINT_SETS[self.joints] if name in JOINT54)
        gt_index = tuple(JOINT54[name] for name in names)
        if self.pred_joints == "joints54":
            pred_index = gt_index
        elif self.joints == "lsp14":
            # ROMP compares the regressor's first 14 rows position by position (its neck / head for LSP's neck
            # / head top, as SPIN and VIBE do).
            pred_index = tuple(range(len(LSP_14)))
        else:
            absent = [name for name in names if name not in H36M_17]
            if absent:
                raise ConfigError(
                    "protocol.pred_joints",
                    self.pred_joints,
                    f"the H36M regressor has no {', '.join(absent)} for joints={self.joints}",
                    "use protocol.pred_joints=joints54",
                )
            pred_index = tuple(H36M_17.index(name) for name in names)
        root_names = ROOT_NAMES[self.alignment]
        missing_root = [name for name in root_names if name not in names]
        if missing_root:
            raise ConfigError(
                "protocol.align",
                self.align,
                f"joints={self.joints} has no {', '.join(missing_root)}",
                "use protocol.align=hips or pelvis, whichever the joint set has",
            )
        root = tuple(names.index(name) for name in root_names)
        return JointComparison(
            names=names,
            gt_index=gt_index,
            pred_key=PRED_JOINTS[self.pred_joints],
            pred_index=pred_index,
            root=root,
            root_names=root_names,
        )

    # -- reporting -------------------------------------------------------------------------------------------
    def metric_names(self) -> list[str]:
        """Names of the per-person metrics this protocol reports (``pck3d`` is named with its threshold)."""
        names = []
        for metric in self.metrics:
            names.append(f"pck3d_{self.pck_threshold_mm:g}mm" if metric == "pck3d" else metric)
        return names

    def describe(self) -> dict[str, str]:
        """The protocol spelled out in words, logged as params next to the metrics."""
        detection = (
            f"centre-map peaks (5x5 NMS) above {self.center_threshold:g}, at most {self.top_k} per image"
        )
        if self.kind == "keypoint_ap":
            score = "centre-map value" if self.keypoint_score == "center" else "1 for every detection (ROMP)"
            return {
                "name": self.name,
                "kind": "2D keypoint AP (OKS, CrowdPose sigmas, AP@[.5:.95], AP50, AP75)",
                "people": f"every detection is a person: {detection}; "
                f"the best {self.max_detections} per image scored",
                "score": score,
                "joints": "CrowdPose-14 of the projected 54 joints (head top 48, neck 47) in image pixels",
            }
        comparison = self.comparison()
        if self.pred_joints == "h36m17":
            prediction = "H36M regressor on the predicted mesh" + (
                " (rows 0-13, ROMP's LSP-first order)" if self.joints == "lsp14" else ""
            )
        else:
            prediction = "our 54-joint set of the predicted mesh"
        matching = {
            "nearest_center": "each GT person takes the nearest detected centre of its image; images without "
            "detections: missed",
            "gt_center": "parameters read at each GT person's own centre cell; nobody is missed",
        }[self.matching]
        if self.one_to_one:
            matching += " (one-to-one, Hungarian)"
        metrics = ", ".join(self.metric_names())
        names = comparison.root_names
        root = f"the midpoint of {names[0]} and {names[1]}" if len(names) == 2 else names[0]
        return {
            "name": self.name,
            "kind": "3D joints and meshes of GT-matched people",
            "joints": f"{self.joints}: {len(comparison.names)} joints ({', '.join(comparison.names)})",
            "prediction": prediction,
            "alignment": f"{root} moved to the origin before MPJPE/PCK; "
            "PA-MPJPE: similarity Procrustes per person on its visible joints",
            "matching": matching,
            "detection": f"{detection}; a true positive lies within {self.detection_radius_cells:g} cells "
            "of a GT centre",
            "metrics": metrics + " (mm; PCK/AUC as fractions)",
            "missing_gt_joints": "left out per person (GT -2)",
            "groups": self.group_by
            + (f" ({self.group_pattern})" if self.group_pattern else "")
            + ("; headline = mean of group means" if self.report_group_mean else ""),
        }


def protocol_from_config(node: Mapping[str, Any] | None, where: str = "protocol") -> Protocol:
    """`Protocol.from_mapping` for an OmegaConf node (resolved first)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)  # type: ignore[assignment]
    return Protocol.from_mapping(node, where=where)
