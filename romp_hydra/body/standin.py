"""A generated stand-in for the SMPL body model -- NOT SMPL -- with SMPL's exact array layout.

SMPL is licensed and cannot ship with the package, yet tests, the synthetic dataset and the quickstart
need a body model. `write_standin` writes one into a folder, under the file names ROMP users have
(`romp_hydra.body.files`), so `smplx` and `romp_hydra.body.smpl.BodyModel` load it exactly like SMPL:

* ``SMPL_NEUTRAL.pkl`` (and ``SMPL_MALE.pkl`` / ``SMPL_FEMALE.pkl``): plain-numpy pickles in the official
  key layout -- ``v_template`` (6890, 3), ``f`` (13776, 3) uint32, ``J_regressor`` (24, 6890) scipy csc,
  ``kintree_table`` (2, 24) with SMPL's root parent 4294967295, ``weights`` (6890, 24), ``posedirs``
  (6890, 3, 207), ``shapedirs`` (6890, 3, 10), ``J`` (24, 3), ``bs_style``, ``bs_type``, plus a
  ``standin_note`` key saying what it is;
* ``J_regressor_extra.npy`` (9, 6890) and ``J_regressor_h36m.npy`` (17, 6890, raw Human3.6M row order);
* ``STANDIN_NOT_SMPL.txt``, a marker saying the folder holds the stand-in.

The body is a T-posed human at SMPL's scale and axes (metres, y up, x to the body's left, face towards
+z; pelvis joint near the origin as in SMPL) made of 26 closed tubes and ellipsoids (torso, neck, head,
nose, upper arms, forearms, palms, fingers, thighs, shins, feet) around SMPL-like rest joints. Each part
is a closed genus-0 grid; neighbouring parts are joined by a tiny hidden sleeve (a connected sum: one
triangle removed on each side, six triangles bridging the holes), so the whole mesh is one closed
orientable surface like SMPL's, and Euler's formula gives exactly F = 2V - 4 = 13776 faces for 6890
vertices. Skinning weights fall off smoothly with the distance to each bone; ``J_regressor`` rows are
affine averages of the vertex rings around each joint, solved so the regressed rest joints land exactly
on the joint centres. The 21 vertex ids that ROMP / smplx read as extra joints (nose, eyes, ears, toes,
heels, finger tips) are placed at those anatomical spots. Shape directions: ``betas[0]`` height (+ is
taller), ``betas[1]`` girth (+ is heavier), 2 shoulder width, 3 leg length, 4 belly, 5 hip width,
6..9 smooth seeded deformations. Pose blend shapes are small: skin near a bent joint bulges outwards.

Command line::

    python -m romp_hydra.body.standin OUT_DIR
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse
from smplx.vertex_ids import vertex_ids as _SMPLX_VERTEX_IDS

from romp_hydra.body import files
from romp_hydra.body.convert import save_plain_pickle

__all__ = [
    "EXTRA_JOINT_VERTEX_IDS",
    "NUM_BETAS",
    "NUM_FACES",
    "NUM_VERTICES",
    "REST_JOINTS",
    "SMPL_PARENTS",
    "STANDIN_NOTE",
    "StandinModel",
    "build_standin",
    "standin_is_complete",
    "write_standin",
]

NUM_VERTICES = 6890
NUM_FACES = 13776
NUM_JOINTS = 24
NUM_BETAS = 10
NUM_POSE_FEATURES = 9 * (NUM_JOINTS - 1)  # 207: (R - I) of the 23 non-root joints
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
_SMPL_ROOT_PARENT = 4294967295  # how SMPL's kintree_table stores "no parent" (uint32 -1)
_MIRROR_JOINT = (0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22)
# The SMPL-topology vertex ids smplx's VertexJointSelector (and ROMP's extra_joints_index) reads.
EXTRA_JOINT_VERTEX_IDS: dict[str, int] = dict(_SMPLX_VERTEX_IDS["smplh"])

STANDIN_NOTE = (
    "romp_hydra stand-in body model, NOT SMPL: generated geometry with SMPL's array layout, for tests and "
    "demos only. Results obtained with it say nothing about SMPL."
)

_GENDER_BETAS = {
    "neutral": np.zeros(NUM_BETAS),
    "male": np.array([0.5, 0.2, 0.9, 0.3, -0.2, -0.6, 0.0, 0.0, 0.0, 0.0]),
    "female": np.array([-0.7, -0.2, -0.9, -0.2, 0.3, 1.0, 0.0, 0.0, 0.0, 0.0]),
}


def _mirror_x(points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) * np.array([-1.0, 1.0, 1.0])


def _with_right_side(left_and_mid: dict[int, Sequence[float]]) -> np.ndarray:
    """Complete a table given for the midline and the left side (x > 0) by mirroring to the right."""
    table = np.zeros((NUM_JOINTS, 3))
    for joint, xyz in left_and_mid.items():
        table[joint] = xyz
        table[_MIRROR_JOINT[joint]] = _mirror_x(xyz)
    return table


# Rest joints (metres), close to SMPL's neutral template; the J_regressor reproduces them exactly.
REST_JOINTS = _with_right_side({
    0: (0.000, -0.223, 0.028),  # pelvis
    1: (0.069, -0.314, 0.023),  # L_hip
    3: (0.000, -0.104, -0.002),  # spine1
    4: (0.104, -0.700, 0.010),  # L_knee
    6: (0.000, 0.035, 0.004),  # spine2
    7: (0.087, -1.106, -0.031),  # L_ankle
    9: (0.000, 0.088, 0.020),  # spine3
    10: (0.120, -1.165, 0.106),  # L_foot (ball of the foot)
    12: (0.000, 0.289, -0.014),  # neck
    13: (0.077, 0.190, -0.009),  # L_collar
    15: (0.000, 0.360, 0.040),  # head
    16: (0.196, 0.237, -0.018),  # L_shoulder
    18: (0.457, 0.220, -0.039),  # L_elbow
    20: (0.722, 0.232, -0.040),  # L_wrist
    22: (0.813, 0.222, -0.053),  # L_hand
})


@dataclass(frozen=True)
class _Part:
    """One closed tube: rings of ``segments`` vertices between two pole vertices ``start`` and ``end``.

    The cross-section at axial position t in [0, 1] is a superellipse with half-axes ``radius_u`` /
    ``radius_w`` (interpolated over ``knots``) in the plane spanned by u and w, where w is ``w_hint``
    made perpendicular to the axis and u = w x axis; ``shift_w`` moves the section centre along w.
    """

    name: str
    start: tuple[float, float, float]
    end: tuple[float, float, float]
    w_hint: tuple[float, float, float]
    rings: int
    segments: int
    knots: tuple[float, ...]
    radius_u: tuple[float, ...]
    radius_w: tuple[float, ...]
    shift_w: tuple[float, ...] | None = None
    cap_power: float = 4.0  # axial closure exponent: 2 ellipsoid, larger = flatter ends
    section_power: float = 2.0  # cross-section exponent: 2 ellipse, larger = boxier
    skin_joints: tuple[int, ...] = ()

    def mirrored(self) -> _Part:
        name = self.name.replace("left", "right")
        return replace(
            self,
            name=name,
            start=tuple(_mirror_x(self.start)),
            end=tuple(_mirror_x(self.end)),
            w_hint=tuple(_mirror_x(self.w_hint)),
            skin_joints=tuple(_MIRROR_JOINT[j] for j in self.skin_joints),
        )


_FINGERS = ("thumb", "index", "middle", "ring", "pinky")
_TORSO_BOTTOM, _TORSO_TOP = -0.43, 0.31  # crotch and shoulder-top heights
_Z = (0.0, 0.0, 1.0)
_Y = (0.0, 1.0, 0.0)


def _torso_t(y: float) -> float:
    """Axial position along the torso of height ``y``."""
    return (y - _TORSO_BOTTOM) / (_TORSO_TOP - _TORSO_BOTTOM)


def _finger(name: str, base: Sequence[float], direction: Sequence[float], length: float, radius: float) -> _Part:
    direction = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
    start = np.asarray(base) - 0.012 * direction  # starts inside the palm
    return _Part(
        name, tuple(start), tuple(np.asarray(base) + length * direction), _Y, rings=5, segments=8,
        knots=(0.0, 1.0), radius_u=(radius, 0.8 * radius), radius_w=(radius, 0.8 * radius),
        skin_joints=(20, 22),
    )


def _left_parts() -> list[_Part]:
    hand_y = 0.221
    fingers = [
        _finger("left_thumb", (0.745, 0.224, -0.028), (0.55, -0.12, 0.82), 0.075, 0.0105),
        _finger("left_index", (0.830, hand_y, -0.026), (1.0, 0.0, 0.05), 0.078, 0.0090),
        _finger("left_middle", (0.832, hand_y, -0.044), (1.0, 0.0, 0.0), 0.086, 0.0092),
        _finger("left_ring", (0.830, hand_y, -0.062), (1.0, 0.0, -0.05), 0.080, 0.0088),
        _finger("left_pinky", (0.824, hand_y, -0.079), (1.0, 0.0, -0.12), 0.064, 0.0078),
    ]
    return [
        _Part("left_upper_arm", (0.135, 0.238, -0.018), (0.487, 0.219, -0.040), _Z, rings=18, segments=20,
              knots=(0.0, 0.2, 1.0), radius_u=(0.052, 0.052, 0.042), radius_w=(0.050, 0.050, 0.040),
              skin_joints=(13, 16, 18)),
        _Part("left_forearm", (0.430, 0.221, -0.039), (0.742, 0.233, -0.040), _Z, rings=18, segments=18,
              knots=(0.0, 0.3, 1.0), radius_u=(0.040, 0.038, 0.026), radius_w=(0.041, 0.040, 0.033),
              skin_joints=(16, 18, 20)),
        _Part("left_palm", (0.705, 0.229, -0.045), (0.840, 0.222, -0.053), _Z, rings=8, segments=16,
              knots=(0.0, 1.0), radius_u=(0.017, 0.013), radius_w=(0.036, 0.043), section_power=3.0,
              skin_joints=(18, 20, 22)),
        *fingers,
        _Part("left_thigh", (0.072, -0.235, 0.020), (0.104, -0.735, 0.010), _Z, rings=18, segments=24,
              knots=(0.0, 0.3, 1.0), radius_u=(0.088, 0.080, 0.056), radius_w=(0.092, 0.085, 0.058),
              shift_w=(0.0, 0.0, 0.005), skin_joints=(0, 1, 4)),
        _Part("left_shin", (0.104, -0.665, 0.010), (0.087, -1.135, -0.031), _Z, rings=20, segments=22,
              knots=(0.0, 0.25, 0.75, 1.0), radius_u=(0.054, 0.058, 0.040, 0.034),
              radius_w=(0.056, 0.064, 0.042, 0.036), shift_w=(0.0, -0.012, -0.005, 0.0),
              skin_joints=(1, 4, 7)),
        _Part("left_foot", (0.090, -1.150, -0.100), (0.125, -1.168, 0.178), _Y, rings=14, segments=16,
              knots=(0.0, 0.3, 0.7, 1.0), radius_u=(0.034, 0.042, 0.050, 0.040),
              radius_w=(0.040, 0.042, 0.028, 0.018), shift_w=(0.0, 0.020, 0.0, -0.005), cap_power=3.0,
              section_power=2.5, skin_joints=(4, 7, 10)),
    ]


def _all_parts() -> list[_Part]:
    torso_y = (-0.43, -0.38, -0.31, -0.22, -0.12, -0.02, 0.08, 0.18, 0.25, 0.31)
    midline = [
        _Part("torso", (0.0, _TORSO_BOTTOM, 0.0), (0.0, _TORSO_TOP, -0.005), _Z, rings=36, segments=40,
              knots=tuple(_torso_t(y) for y in torso_y),
              radius_u=(0.120, 0.150, 0.165, 0.160, 0.140, 0.140, 0.155, 0.170, 0.165, 0.100),
              radius_w=(0.070, 0.095, 0.105, 0.100, 0.090, 0.095, 0.105, 0.095, 0.075, 0.050),
              shift_w=(0.0, 0.0, -0.005, 0.010, 0.020, 0.015, 0.015, 0.0, -0.005, -0.010),
              cap_power=6.0, section_power=2.3, skin_joints=(0, 3, 6, 9, 12, 13, 14, 1, 2, 16, 17)),
        _Part("neck", (0.0, 0.210, -0.015), (0.0, 0.400, 0.000), _Z, rings=9, segments=24,
              knots=(0.0, 1.0), radius_u=(0.052, 0.050), radius_w=(0.058, 0.055), skin_joints=(9, 12, 15)),
        _Part("head", (0.0, 0.318, 0.035), (0.0, 0.552, 0.030), _Z, rings=26, segments=36,
              knots=(0.0, 0.25, 0.55, 1.0), radius_u=(0.066, 0.076, 0.080, 0.070),
              radius_w=(0.085, 0.095, 0.100, 0.090), shift_w=(0.005, 0.0, 0.0, -0.005), cap_power=2.0,
              skin_joints=(12, 15)),
        _Part("nose", (0.0, 0.425, 0.105), (0.0, 0.415, 0.152), _Y, rings=3, segments=10,
              knots=(0.0, 1.0), radius_u=(0.011, 0.008), radius_w=(0.016, 0.010), cap_power=2.0,
              skin_joints=(15,)),
    ]
    left = _left_parts()
    return midline + left + [part.mirrored() for part in left]


def _tube(part: _Part) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (rings * segments + 2, 3) and outward-facing faces (2 * rings * segments, 3) of one part."""
    start, end = np.asarray(part.start), np.asarray(part.end)
    axis = end - start
    axis_dir = axis / np.linalg.norm(axis)
    w = np.asarray(part.w_hint, dtype=np.float64)
    w = w - w.dot(axis_dir) * axis_dir
    w /= np.linalg.norm(w)
    u = np.cross(w, axis_dir)

    # Ring positions: half uniform, half Chebyshev, so caps get enough rings to look round.
    i = np.arange(1, part.rings + 1) / (part.rings + 1)
    t = 0.5 * i + 0.25 * (1.0 - np.cos(np.pi * i))
    closure = (1.0 - np.abs(2.0 * t - 1.0) ** part.cap_power) ** (1.0 / part.cap_power)
    ru = np.interp(t, part.knots, part.radius_u) * closure
    rw = np.interp(t, part.knots, part.radius_w) * closure
    shift = np.interp(t, part.knots, part.shift_w) if part.shift_w else np.zeros_like(t)

    phi = 2.0 * np.pi * np.arange(part.segments) / part.segments
    exponent = 2.0 / part.section_power
    cos_p = np.sign(np.cos(phi)) * np.abs(np.cos(phi)) ** exponent
    sin_p = np.sign(np.sin(phi)) * np.abs(np.sin(phi)) ** exponent
    centres = start + t[:, None] * axis + shift[:, None] * w  # (R, 3)
    rings = (
        centres[:, None, :]
        + (ru[:, None] * cos_p[None, :])[..., None] * u
        + (rw[:, None] * sin_p[None, :])[..., None] * w
    )
    shift_ends = (part.shift_w[0], part.shift_w[-1]) if part.shift_w else (0.0, 0.0)
    poles = np.stack([start + shift_ends[0] * w, end + shift_ends[1] * w])
    verts = np.concatenate([rings.reshape(-1, 3), poles])

    # Quads (i, j) -> (i, j+1) -> (i+1, j+1) -> (i+1, j), split in two consistently oriented triangles.
    rows, segs = part.rings, part.segments
    ii, jj = np.meshgrid(np.arange(rows - 1), np.arange(segs), indexing="ij")
    a = ii * segs + jj
    b = ii * segs + (jj + 1) % segs
    c = (ii + 1) * segs + jj
    d = (ii + 1) * segs + (jj + 1) % segs
    body = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    j = np.arange(segs)
    first_pole, last_pole = rows * segs, rows * segs + 1
    cap_start = np.stack([np.full(segs, first_pole), (j + 1) % segs, j], -1)
    cap_end = np.stack([np.full(segs, last_pole), (rows - 1) * segs + j, (rows - 1) * segs + (j + 1) % segs], -1)
    faces = np.concatenate([body, cap_start, cap_end])
    if _signed_volume(verts, faces) < 0:  # mirrored parts come out inside-out
        faces = faces[:, [0, 2, 1]]
    return verts, faces


def _signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return float(np.einsum("ij,ij->i", v0, np.cross(v1, v2)).sum() / 6.0)


def _face_areas(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return 0.5 * np.linalg.norm(np.cross(v1 - v0, v2 - v0), axis=1)


def _sleeve(hole_a: np.ndarray, hole_b: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Six triangles joining the boundaries of two removed triangles (a0 a1 a2) and (b0 b1 b2).

    The remaining faces use each hole edge a_i -> a_i+1 backwards, so the sleeve uses it forwards; hole B
    is walked in the opposite sense. The rotation that pairs each a_i with the nearest b gives no twist.
    """
    best = None
    for offset in range(3):
        paired = hole_b[(offset - np.arange(3)) % 3]
        cost = np.linalg.norm(verts[hole_a] - verts[paired], axis=1).sum()
        if best is None or cost < best[0]:
            best = (cost, paired)
    paired = best[1]
    faces = []
    for i in range(3):
        nxt = (i + 1) % 3
        faces.append((hole_a[i], hole_a[nxt], paired[nxt]))
        faces.append((hole_a[i], paired[nxt], paired[i]))
    return np.asarray(faces)


def _bone_segments(middle_tip: np.ndarray, toe_tip: np.ndarray) -> np.ndarray:
    """(24, 2, 3): the bone each joint rotates, from the joint to its child (ends chosen for leaves)."""
    J = REST_JOINTS
    child = {0: None, 1: 4, 2: 5, 3: 6, 4: 7, 5: 8, 6: 9, 7: 10, 8: 11, 9: 12, 12: 15, 13: 16, 14: 17,
             16: 18, 17: 19, 18: 20, 19: 21, 20: 22, 21: 23}
    bones = np.zeros((NUM_JOINTS, 2, 3))
    for joint in range(NUM_JOINTS):
        bones[joint, 0] = J[joint]
        if joint in child and child[joint] is not None:
            bones[joint, 1] = J[child[joint]]
    # The pelvis carries the hips and the crotch up to spine1; leaves end at the tip they carry.
    bones[0] = [(0.0, -0.40, 0.02), J[3]]
    bones[15, 1] = (0.0, 0.50, 0.03)
    bones[10, 1], bones[11, 1] = toe_tip, _mirror_x(toe_tip)
    bones[22, 1], bones[23, 1] = middle_tip, _mirror_x(middle_tip)
    return bones


def _distance_to_segments(points: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """(P, S) distances from points (P, 3) to segments (S, 2, 3)."""
    a, b = segments[:, 0], segments[:, 1]
    ab = b - a
    rel = points[:, None, :] - a[None]
    t = np.clip(np.einsum("psk,sk->ps", rel, ab) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    closest = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(points[:, None, :] - closest, axis=-1)


def _skinning_weights(verts: np.ndarray, part_of_vertex: np.ndarray, parts: list[_Part],
                      bones: np.ndarray, falloff: float = 0.012, floor: float = 0.02) -> np.ndarray:
    """(V, 24) weights: among each part's candidate joints, exp(-(d - d_min) / falloff) of bone distance."""
    distance = _distance_to_segments(verts, bones)
    allowed = np.zeros((len(verts), NUM_JOINTS), dtype=bool)
    for index, part in enumerate(parts):
        allowed[np.ix_(part_of_vertex == index, list(part.skin_joints))] = True
    distance = np.where(allowed, distance, np.inf)
    weights = np.exp(-(distance - distance.min(axis=1, keepdims=True)) / falloff)
    weights /= weights.sum(axis=1, keepdims=True)
    weights[weights < floor] = 0.0  # keep them sparse, as SMPL's are
    return weights / weights.sum(axis=1, keepdims=True)


def _regressor_row(verts: np.ndarray, candidates: np.ndarray, target: Sequence[float], axis: Sequence[float],
                   radius: float = 0.12, half_slab: float = 0.01, min_count: int = 16) -> np.ndarray:
    """Affine vertex weights (sum 1) whose weighted mean is exactly ``target``.

    Takes the candidate vertices in a slab across ``axis`` around the target (a ring around a limb or the
    torso), widened until they span 3D, then the least-norm change of uniform weights hitting the target.
    """
    target = np.asarray(target, dtype=np.float64)
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    rel = verts - target
    along, dist = np.abs(rel @ axis), np.linalg.norm(rel, axis=1)
    while True:
        chosen = np.flatnonzero(candidates & (along < half_slab) & (dist < radius))
        if len(chosen) >= min_count:
            spread = np.linalg.svd(verts[chosen] - verts[chosen].mean(0), compute_uv=False)
            if spread[-1] > 1e-3:
                break
        half_slab *= 1.5
        if half_slab > 0.5:
            raise RuntimeError(f"stand-in: no vertex ring around regressor target {target.tolist()}")
    points = verts[chosen]
    uniform = np.full(len(chosen), 1.0 / len(chosen))
    constraints = np.vstack([points.T, np.ones(len(chosen))])  # (4, K)
    goal = np.append(target, 1.0)
    lagrange = np.linalg.solve(constraints @ constraints.T, goal - constraints @ uniform)
    row = np.zeros(len(verts))
    row[chosen] = uniform + constraints.T @ lagrange
    return row


def _ring_radius(parts: Sequence[str]) -> float:
    """How far from a regressor target its vertex ring may reach: the torso is wider than any limb."""
    return 0.25 if tuple(parts) == ("torso",) else 0.12


def _vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    face_normals = np.cross(v1 - v0, v2 - v0)  # length = 2 * area: area-weighted accumulation
    normals = np.zeros_like(verts)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass
class StandinModel:
    """All arrays of the stand-in, in SMPL's vertex order (before writing)."""

    v_template: np.ndarray  # (6890, 3)
    faces: np.ndarray  # (13776, 3) uint32
    weights: np.ndarray  # (6890, 24)
    shapedirs: np.ndarray  # (6890, 3, 10)
    posedirs: np.ndarray  # (6890, 3, 207)
    j_regressor: np.ndarray  # (24, 6890) dense
    j_regressor_extra: np.ndarray  # (9, 6890)
    j_regressor_h36m: np.ndarray  # (17, 6890), raw H36M row order
    part_names: list[str]
    part_of_vertex: np.ndarray  # (6890,) index into part_names


class _Builder:
    """Builds the stand-in step by step in a natural vertex order, then renumbers to SMPL's ids."""

    def __init__(self, seed: int):
        self.seed = seed
        self.parts = _all_parts()
        self.part_index = {part.name: index for index, part in enumerate(self.parts)}
        pieces = [_tube(part) for part in self.parts]
        counts = [len(v) for v, _ in pieces]
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self.verts = np.concatenate([v for v, _ in pieces])
        self.part_of_vertex = np.repeat(np.arange(len(self.parts)), counts)
        self.part_faces = [f + self.offsets[k] for k, (_, f) in enumerate(pieces)]
        if len(self.verts) != NUM_VERTICES:
            raise AssertionError(f"stand-in parts hold {len(self.verts)} vertices, expected {NUM_VERTICES}")

    # -- topology -------------------------------------------------------------------------------------
    def pole(self, part: str, which: int) -> int:
        """Natural index of a part's start (0) or end (1) pole vertex."""
        spec = self.parts[self.part_index[part]]
        return int(self.offsets[self.part_index[part]] + spec.rings * spec.segments + which)

    def nearest(self, part: str, point: Sequence[float]) -> int:
        ids = np.flatnonzero(self.part_of_vertex == self.part_index[part])
        return int(ids[np.argmin(np.linalg.norm(self.verts[ids] - np.asarray(point), axis=1))])

    def joins(self) -> list[tuple[str, str, np.ndarray]]:
        """(part, part, point): neighbouring parts, joined by a sleeve near ``point``."""
        J = REST_JOINTS
        pairs = [("torso", "neck", J[12]), ("neck", "head", J[15]), ("head", "nose", np.array([0.0, 0.42, 0.11]))]
        for side, (hip, knee, ankle, shoulder, elbow, wrist) in (("left", (1, 4, 7, 16, 18, 20)),
                                                               ("right", (2, 5, 8, 17, 19, 21))):
            pairs += [
                ("torso", f"{side}_upper_arm", J[shoulder]),
                (f"{side}_upper_arm", f"{side}_forearm", J[elbow]),
                (f"{side}_forearm", f"{side}_palm", J[wrist]),
                ("torso", f"{side}_thigh", J[hip]),
                (f"{side}_thigh", f"{side}_shin", J[knee]),
                (f"{side}_shin", f"{side}_foot", J[ankle]),
            ]
            for finger in _FINGERS:
                base = np.asarray(self.parts[self.part_index[f"{side}_{finger}"]].start)
                pairs.append((f"{side}_palm", f"{side}_{finger}", base))
        return pairs

    def faces_with_sleeves(self) -> np.ndarray:
        """Remove one triangle per side of every join and bridge the holes: one closed surface."""
        kept = [np.ones(len(f), dtype=bool) for f in self.part_faces]
        used_vertices: list[set[int]] = [set() for _ in self.parts]
        sleeves = []
        for part_a, part_b, point in self.joins():
            holes = []
            for name in (part_a, part_b):
                k = self.part_index[name]
                faces = self.part_faces[k]
                centroids = self.verts[faces].mean(axis=1)
                order = np.argsort(np.linalg.norm(centroids - point, axis=1), kind="stable")
                # Holes on one part must not touch, or the surface would pinch at a shared vertex.
                pick = next(f for f in order if kept[k][f] and not used_vertices[k] & set(faces[f].tolist()))
                kept[k][pick] = False
                used_vertices[k] |= set(faces[pick].tolist())
                holes.append(faces[pick])
            sleeves.append(_sleeve(holes[0], holes[1], self.verts))
        faces = np.concatenate([f[k] for f, k in zip(self.part_faces, kept)] + sleeves)
        if len(faces) != NUM_FACES:
            raise AssertionError(f"stand-in has {len(faces)} faces, expected {NUM_FACES}")
        if _face_areas(self.verts, faces).min() < 1e-9:
            raise AssertionError("stand-in has a degenerate triangle")
        return faces

    # -- anatomy ---------------------------------------------------------------------------------------
    def extra_joint_vertices(self) -> dict[str, int]:
        """Natural index of the vertex to renumber as each smplx extra-joint id."""
        chosen = {"nose": self.pole("nose", 1)}
        for side, prefix, flip in (("left", "l", 1.0), ("right", "r", -1.0)):
            chosen[f"{prefix}eye"] = self.nearest("head", (0.033 * flip, 0.462, 0.125))
            chosen[f"{prefix}ear"] = self.nearest("head", (0.085 * flip, 0.438, 0.020))
            for finger in _FINGERS:
                chosen[f"{prefix}{finger}"] = self.pole(f"{side}_{finger}", 1)
            foot = f"{side}_foot"
            upper = prefix.upper()
            chosen[f"{upper}BigToe"] = self.nearest(foot, (0.100 * flip, -1.178, 0.172))
            chosen[f"{upper}SmallToe"] = self.nearest(foot, (0.150 * flip, -1.180, 0.135))
            chosen[f"{upper}Heel"] = self.nearest(foot, (0.088 * flip, -1.190, -0.105))
        if len(set(chosen.values())) != len(chosen):
            raise AssertionError("stand-in: two extra joints picked the same vertex")
        return chosen

    def mask(self, *names: str) -> np.ndarray:
        return np.isin(self.part_of_vertex, [self.part_index[n] for n in names])

    def axis_of(self, part: str) -> np.ndarray:
        spec = self.parts[self.part_index[part]]
        return np.asarray(spec.end) - np.asarray(spec.start)

    def joint_regressor(self) -> np.ndarray:
        J = REST_JOINTS
        up = np.array([0.0, 1.0, 0.0])
        rows = np.zeros((NUM_JOINTS, NUM_VERTICES))
        for side, joints in (("left", (1, 4, 7, 10, 13, 16, 18, 20, 22)), ("right", (2, 5, 8, 11, 14, 17, 19, 21, 23))):
            hip, knee, ankle, foot, collar, shoulder, elbow, wrist, hand = joints
            thigh, shin = self.axis_of(f"{side}_thigh"), self.axis_of(f"{side}_shin")
            arm, fore = self.axis_of(f"{side}_upper_arm"), self.axis_of(f"{side}_forearm")
            rows[hip] = _regressor_row(self.verts, self.mask(f"{side}_thigh"), J[hip], thigh)
            rows[knee] = _regressor_row(self.verts, self.mask(f"{side}_thigh", f"{side}_shin"), J[knee],
                                        thigh / np.linalg.norm(thigh) + shin / np.linalg.norm(shin))
            rows[ankle] = _regressor_row(self.verts, self.mask(f"{side}_shin"), J[ankle], shin)
            rows[foot] = _regressor_row(self.verts, self.mask(f"{side}_foot"), J[foot], self.axis_of(f"{side}_foot"))
            rows[collar] = _regressor_row(self.verts, self.mask("torso"), J[collar], arm)
            rows[shoulder] = _regressor_row(self.verts, self.mask(f"{side}_upper_arm"), J[shoulder], arm)
            rows[elbow] = _regressor_row(self.verts, self.mask(f"{side}_upper_arm", f"{side}_forearm"), J[elbow], arm)
            rows[wrist] = _regressor_row(self.verts, self.mask(f"{side}_forearm", f"{side}_palm"), J[wrist], fore)
            rows[hand] = _regressor_row(self.verts, self.mask(f"{side}_palm"), J[hand], self.axis_of(f"{side}_palm"))
        for joint in (0, 3, 6, 9):
            rows[joint] = _regressor_row(self.verts, self.mask("torso"), J[joint], up, radius=_ring_radius(("torso",)))
        rows[12] = _regressor_row(self.verts, self.mask("neck"), J[12], up)
        rows[15] = _regressor_row(self.verts, self.mask("head", "neck"), J[15], up)
        return rows

    def _landmark_rows(self, table: list[tuple[str, Sequence[float], tuple[str, ...], Sequence[float]]]) -> np.ndarray:
        """One regressor row per (name, target, parts, axis) entry."""
        return np.stack([
            _regressor_row(self.verts, self.mask(*parts), target, axis, radius=_ring_radius(parts))
            for _, target, parts, axis in table
        ])

    def extra_regressor(self) -> np.ndarray:
        """Rows for joints 45..53 of the 54-joint set (R_Hip, L_Hip, Neck_LSP, Head_top, Pelvis,
        Thorax_MPII, Spine_H36M, Jaw_H36M, Head)."""
        up = (0.0, 1.0, 0.0)
        return self._landmark_rows([
            ("R_Hip", (-0.086, -0.340, 0.020), ("right_thigh",), self.axis_of("right_thigh")),
            ("L_Hip", (0.086, -0.340, 0.020), ("left_thigh",), self.axis_of("left_thigh")),
            ("Neck_LSP", (0.0, 0.262, -0.008), ("neck",), up),
            ("Head_top", (0.0, 0.535, 0.030), ("head",), up),
            ("Pelvis", (0.0, -0.300, 0.020), ("torso",), up),
            ("Thorax_MPII", (0.0, 0.215, -0.005), ("torso",), up),
            ("Spine_H36M", (0.0, -0.030, 0.005), ("torso",), up),
            ("Jaw_H36M", (0.0, 0.352, 0.070), ("head",), up),
            ("Head", (0.0, 0.480, 0.040), ("head",), up),
        ])

    def h36m_regressor(self) -> np.ndarray:
        """Rows in the raw order of SPIN's J_regressor_h36m.npy, i.e. the order ROMP's
        H36M_TO_J17 = [6,5,4,1,2,3,16,15,14,11,12,13,8,10,0,7,9] turns into LSP-14 + pelvis, spine, head:
        0 pelvis, 1-3 left hip/knee/ankle, 4-6 right hip/knee/ankle, 7 spine, 8 neck (thorax), 9 jaw,
        10 head (upper skull; stands in for LSP's head top), 11-13 left shoulder/elbow/wrist,
        14-16 right shoulder/elbow/wrist (`joint_sets.H36M_17_STANDARD`)."""
        up = (0.0, 1.0, 0.0)
        table = [("Pelvis", (0.0, -0.290, 0.020), ("torso",), up)]
        for side, flip in (("left", 1.0), ("right", -1.0)):
            knee_axis = self.axis_of(f"{side}_thigh") + self.axis_of(f"{side}_shin")
            table += [
                ("Hip", (0.080 * flip, -0.330, 0.020), (f"{side}_thigh",), self.axis_of(f"{side}_thigh")),
                ("Knee", (0.104 * flip, -0.705, 0.015), (f"{side}_thigh", f"{side}_shin"), knee_axis),
                ("Ankle", (0.088 * flip, -1.108, -0.028), (f"{side}_shin",), self.axis_of(f"{side}_shin")),
            ]
        table += [
            ("Spine", (0.0, -0.020, 0.008), ("torso",), up),
            ("Thorax", (0.0, 0.250, -0.008), ("torso", "neck"), up),
            ("Jaw", (0.0, 0.372, 0.072), ("head",), up),
            ("Head", (0.0, 0.480, 0.040), ("head",), up),
        ]
        for side, flip in (("left", 1.0), ("right", -1.0)):
            arm, fore = self.axis_of(f"{side}_upper_arm"), self.axis_of(f"{side}_forearm")
            table += [
                ("Shoulder", (0.190 * flip, 0.236, -0.020), (f"{side}_upper_arm",), arm),
                ("Elbow", (0.456 * flip, 0.221, -0.040), (f"{side}_upper_arm", f"{side}_forearm"), arm),
                ("Wrist", (0.722 * flip, 0.232, -0.041), (f"{side}_forearm", f"{side}_palm"), fore),
            ]
        return self._landmark_rows(table)

    # -- deformations ----------------------------------------------------------------------------------
    def radial(self) -> np.ndarray:
        """Each vertex's offset from the nearest point of its part's axis (for girth changes)."""
        out = np.zeros_like(self.verts)
        for k, part in enumerate(self.parts):
            ids = self.part_of_vertex == k
            start, end = np.asarray(part.start), np.asarray(part.end)
            axis = end - start
            t = np.clip((self.verts[ids] - start) @ axis / axis.dot(axis), 0.0, 1.0)
            out[ids] = self.verts[ids] - (start + t[:, None] * axis)
        return out

    def shape_directions(self) -> np.ndarray:
        """(V, 3, 10) displacement per unit of each beta."""
        v = self.verts
        x, y, z = v[:, 0], v[:, 1], v[:, 2]
        side = np.tanh(x / 0.03)  # smooth sign of x: keeps left/right symmetric deformations continuous
        dirs = np.zeros((NUM_VERTICES, 3, NUM_BETAS))
        pelvis = REST_JOINTS[0]
        # 0: overall size, mostly height (+ is taller).
        dirs[:, :, 0] = (v - pelvis) * np.array([0.025, 0.045, 0.025])
        # 1: girth, strongest on the trunk and thighs.
        gain = {"torso": 1.0, "neck": 0.6, "head": 0.15, "nose": 0.0, "upper_arm": 0.8, "forearm": 0.6,
                "palm": 0.3, "thigh": 0.9, "shin": 0.6, "foot": 0.2}
        per_part = np.array([next((g for key, g in gain.items() if p.name.endswith(key)), 0.2)
                             for p in self.parts])
        dirs[:, :, 1] = 0.6 * self.radial() * per_part[self.part_of_vertex, None]
        # 2: shoulder width: arms shift sideways, the upper torso widens with them.
        arm_parts = [k for k, p in enumerate(self.parts)
                     if any(key in p.name for key in ("arm", "palm", "thumb", "index", "middle", "ring", "pinky"))]
        in_arm = np.isin(self.part_of_vertex, arm_parts)
        torso = self.part_of_vertex == self.part_index["torso"]
        dirs[:, 0, 2] = np.where(in_arm, 0.025 * np.sign(x), 0.0)
        dirs[torso, 0, 2] = 0.025 * (x[torso] / 0.17) * _smoothstep((y[torso] - 0.0) / 0.2)
        # 3: leg length: everything below the hips moves down, more the lower it is.
        dirs[:, 1, 3] = -0.06 * np.clip((-0.30 - y) / 0.89, 0.0, 1.0)
        # 4: belly: the front of the abdomen moves forward.
        belly = np.exp(-(((y + 0.12) / 0.12) ** 2)) * np.clip((z - 0.015) / 0.09, 0.0, 1.0)
        dirs[torso, 2, 4] = 0.035 * belly[torso]
        # 5: hip width: the pelvis widens and the thighs move apart, fading towards the knees.
        hips = torso & (y < -0.10)
        dirs[hips, 0, 5] = 0.02 * (x[hips] / 0.165) * np.exp(-(((y[hips] + 0.30) / 0.10) ** 2))
        thighs = self.mask("left_thigh", "right_thigh")
        dirs[thighs, 0, 5] = 0.02 * side[thighs] * np.clip((y[thighs] + 0.70) / 0.45, 0.0, 1.0)
        # 6..9: smooth seeded deformations, mirror-symmetric so the body stays left/right symmetric.
        rng = np.random.default_rng(self.seed)
        mirrored = np.stack([np.abs(x), y, z], axis=1)
        for beta in range(6, NUM_BETAS):
            for axis_index in range(3):
                frequencies = rng.uniform(-6.0, 6.0, size=(3, 3))
                phases = rng.uniform(0.0, 2.0 * np.pi, size=3)
                amplitudes = rng.uniform(0.002, 0.006, size=3)
                field = (amplitudes * np.sin(mirrored @ frequencies.T + phases)).sum(axis=1)
                dirs[:, axis_index, beta] = field * (side if axis_index == 0 else 1.0)
        return dirs

    def pose_directions(self, weights: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """(V, 3, 207): skin shared by a joint and its parent bulges outwards as the joint bends.

        The offset is -0.01 * (trace(R_j) - 3) * blend * normal; trace(R) - 3 = 2 cos(angle) - 2 is 0 at
        rest and -2 at a right angle, so the bulge is at most 2 cm and vanishes in the rest pose.
        """
        normals = _vertex_normals(self.verts, faces)
        posedirs = np.zeros((NUM_VERTICES, 3, NUM_POSE_FEATURES))
        for joint in range(1, NUM_JOINTS):
            blend = np.clip(4.0 * weights[:, joint] * weights[:, SMPL_PARENTS[joint]], 0.0, 1.0)
            for diagonal in (0, 4, 8):  # R_00, R_11, R_22: their sum minus 3 is the trace feature
                posedirs[:, :, 9 * (joint - 1) + diagonal] = -0.01 * blend[:, None] * normals
        return posedirs


def build_standin(seed: int = 0) -> StandinModel:
    """Generate the stand-in arrays (deterministic for a given ``seed``; seed only changes betas 6..9)."""
    builder = _Builder(seed)
    faces = builder.faces_with_sleeves()
    middle_tip = builder.verts[builder.pole("left_middle", 1)]
    toe_tip = builder.verts[builder.pole("left_foot", 1)]
    weights = _skinning_weights(builder.verts, builder.part_of_vertex, builder.parts,
                                _bone_segments(middle_tip, toe_tip))
    j_regressor = builder.joint_regressor()
    extra = builder.extra_regressor()
    h36m = builder.h36m_regressor()
    shapedirs = builder.shape_directions()
    posedirs = builder.pose_directions(weights, faces)

    # Renumber so that the vertices smplx reads as extra joints carry SMPL's ids.
    order = np.arange(NUM_VERTICES)  # order[new_id] = natural index
    for name, natural in builder.extra_joint_vertices().items():
        target = EXTRA_JOINT_VERTEX_IDS[name]
        current = int(np.flatnonzero(order == natural)[0])
        order[[current, target]] = order[[target, current]]
    new_id = np.empty_like(order)
    new_id[order] = np.arange(NUM_VERTICES)

    return StandinModel(
        v_template=builder.verts[order],
        faces=new_id[faces].astype(np.uint32),
        weights=weights[order],
        shapedirs=shapedirs[order],
        posedirs=posedirs[order],
        j_regressor=j_regressor[:, order],
        j_regressor_extra=extra[:, order],
        j_regressor_h36m=h36m[:, order],
        part_names=[part.name for part in builder.parts],
        part_of_vertex=builder.part_of_vertex[order],
    )


def _smpl_dict(model: StandinModel, gender: str) -> dict:
    """The stand-in in the key layout of an official SMPL pickle (gendered templates are shape offsets)."""
    v_template = model.v_template + model.shapedirs @ _GENDER_BETAS[gender]
    kintree = np.stack([np.array(SMPL_PARENTS, dtype=np.int64), np.arange(NUM_JOINTS, dtype=np.int64)])
    kintree[0, 0] = _SMPL_ROOT_PARENT
    return {
        "v_template": v_template,
        "f": model.faces,
        "J_regressor": scipy.sparse.csc_matrix(model.j_regressor),
        "J": model.j_regressor @ v_template,
        "kintree_table": kintree,
        "weights": model.weights,
        # float32 halves the 35 MB float64 file; smplx casts to float32 on load anyway.
        "posedirs": model.posedirs.astype(np.float32),
        "shapedirs": model.shapedirs,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        "standin_note": STANDIN_NOTE,
    }


_MARKER_TEXT = f"""{STANDIN_NOTE}

Written by `python -m romp_hydra.body.standin` (romp_hydra.body.standin.write_standin). The files here
(SMPL_NEUTRAL.pkl, SMPL_MALE.pkl, SMPL_FEMALE.pkl, J_regressor_extra.npy, J_regressor_h36m.npy) have the
array layout of the licensed SMPL files but hold generated geometry. For real results get SMPL from
https://smpl.is.tue.mpg.de and use body_model=smpl.
"""


def standin_is_complete(out_dir: str | os.PathLike) -> bool:
    """True when ``out_dir`` holds every stand-in file (the marker is written last)."""
    out_dir = Path(out_dir)
    names = [*files.SMPL_MODEL_FILES.values(), files.J_REGRESSOR_EXTRA_FILE, files.J_REGRESSOR_H36M_FILE,
             files.STANDIN_MARKER_FILE]
    return all((out_dir / name).is_file() for name in names)


def _save_npy(array: np.ndarray, path: Path) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with partial.open("wb") as handle:
        np.save(handle, array)
    os.replace(partial, path)


def write_standin(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write the stand-in body model into ``out_dir`` (created if needed) and return its path.

    Deterministic: the same ``seed`` writes byte-identical files. Every file is written atomically and the
    marker last, so parallel writers (e.g. several DDP ranks) never leave a half-written folder.

    Raises:
        FileExistsError: ``out_dir`` holds a SMPL model that is not a stand-in (never overwritten).
    """
    out_dir = Path(out_dir).expanduser()
    existing = out_dir / files.SMPL_MODEL_FILES["neutral"]
    if existing.is_file() and not files.is_standin_dir(out_dir):
        raise FileExistsError(
            f"{existing} exists and is not a stand-in (no {files.STANDIN_MARKER_FILE}); refusing to overwrite "
            "what may be the licensed SMPL model. Give the stand-in its own folder (body_model.model_dir)."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_standin(seed)
    for gender, name in files.SMPL_MODEL_FILES.items():
        save_plain_pickle(_smpl_dict(model, gender), out_dir / name)
    _save_npy(model.j_regressor_extra, out_dir / files.J_REGRESSOR_EXTRA_FILE)
    _save_npy(model.j_regressor_h36m, out_dir / files.J_REGRESSOR_H36M_FILE)
    marker = out_dir / files.STANDIN_MARKER_FILE
    partial = marker.with_name(f".{marker.name}.{os.getpid()}.partial")
    partial.write_text(_MARKER_TEXT + f"seed: {seed}\n")
    os.replace(partial, marker)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m romp_hydra.body.standin",
        description="Write the deterministic stand-in body model (NOT SMPL) with SMPL's file layout.",
    )
    parser.add_argument("out_dir", type=Path, help="folder to write SMPL_NEUTRAL.pkl, regressors and marker into")
    parser.add_argument("--seed", type=int, default=0, help="seed of the smooth shape directions 6..9")
    args = parser.parse_args(argv)
    try:
        out = write_standin(args.out_dir, seed=args.seed)
    except FileExistsError as error:
        print(f"standin: {error}", file=sys.stderr)
        return 1
    print(f"wrote the stand-in body model (NOT SMPL) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
