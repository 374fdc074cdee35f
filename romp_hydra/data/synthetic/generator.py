"""One synthetic image: posed bodies from the (stand-in) body model, placed in front of a pinhole camera,
rendered over a procedural background, with exact annotations.

Coordinate conventions (docs/architecture.md):

* camera axes: x right, y down, z forward, metres;
* ``params[:3]`` (global orient) is the rotation that, fed to the body model, produces the mesh already in
  camera axes, so ``body_model(params)`` root-centred equals ``kp3ds`` exactly;
* ``kp3ds`` are root-centred on the mean of joints 45 (R_Hip) and 46 (L_Hip); ``root_trans`` is that root
  in camera coordinates, so the camera-frame joints are ``kp3ds + root_trans``;
* ``kp2ds`` are those joints projected with ``cam_mat`` in OpenCV pixel coordinates (the centre of pixel
  (row, col) is (x, y) = (col, row)); ``vis`` is 1 inside the image and 0 outside (the coordinates are kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from romp_hydra.body.joint_sets import ROOT_JOINTS, SMPL24_PARENTS, TORSO_JOINTS
from romp_hydra.data.synthetic.backgrounds import BACKGROUNDS, random_color
from romp_hydra.data.synthetic.poses import (
    POSE_SPACES,
    sample_betas,
    sample_body_pose,
    sample_global_orient,
    sample_prototype_pose,
)
from romp_hydra.viz.render import PinholeCamera, render_meshes

__all__ = ["GENERATOR_VERSION", "VARIANTS", "SceneConfig", "SceneGenerator", "SyntheticSample"]

# Bump whenever a change alters the generated images or annotations: it invalidates every cache.
GENERATOR_VERSION = 2  # 2: poses drawn around everyday prototypes (pose_space='prototypes')

NUM_BETAS = 10
_PLACEMENT_ATTEMPTS = 30
_MIN_VISIBLE_TORSO_JOINTS = 2  # fewer, and hidden behind others: the person is removed from the scene


@dataclass(frozen=True)
class SceneConfig:
    """What the images of one synthetic variant look like.

    Attributes:
        people_range: inclusive (min, max) number of people drawn per image (a person whose torso ends up
            hidden behind others is removed, so an image may hold fewer).
        image_size_range: inclusive (min, max) pixels, drawn independently for width and height.
        person_height_range: projected body height as a fraction of the image height.
        center_region: 1 places a person anywhere it fits in the image, smaller values pull it towards the
            image centre by that factor.
        outside_prob: probability that a person is placed straddling an image border (partly outside).
        yaw_range_deg: people turn by up to this much away from facing the camera.
        back_facing_prob: probability of a person turned by a further 180 degrees (seen from behind).
        background: 'procedural' (default): textures, a horizon and body-coloured blobs, so that people are
            not found as "the non-flat pixels"; 'plain': one flat colour, the people are the only structure
            (the quickstart's images: a tiny network from scratch learns poses from them in minutes).
        pose_space: 'prototypes' (default): poses near a few everyday poses (standing, walking, sitting, ...,
            ``poses.sample_prototype_pose``), so that what a person does can be seen and learnt; 'uniform':
            independent joint angles within the limits (``poses.sample_body_pose``), for which the mean pose is
            close to the best any image-based regressor can do (the version-1 data).
        pose_noise_deg: Gaussian noise on every joint angle around the prototypes ('prototypes' only).
        pose_blend_prob: share of poses blended with a second prototype ('prototypes' only).
        pose_amplitude_range: how far poses go from a relaxed standing pose towards random poses within
            the joint limits ('uniform' only, see ``poses.sample_body_pose``).
        fov_range_deg: horizontal-or-vertical (whichever side is longer) field of view of the camera.
        min_center_distance: two people's torso centres are at least this times the smaller person's
            projected height apart, so every person keeps a centre of its own.
    """

    people_range: tuple[int, int]
    image_size_range: tuple[int, int]
    person_height_range: tuple[float, float]
    center_region: float
    outside_prob: float
    yaw_range_deg: float
    back_facing_prob: float
    background: str = "procedural"
    pose_space: str = "prototypes"
    pose_noise_deg: float = 10.0
    pose_blend_prob: float = 0.5
    pose_amplitude_range: tuple[float, float] = (0.2, 1.0)
    fov_range_deg: tuple[float, float] = (45.0, 65.0)
    min_center_distance: float = 0.0

    def __post_init__(self) -> None:
        low, high = self.people_range
        if not 1 <= low <= high:
            raise ValueError(f"people_range must be (min, max) with 1 <= min <= max, got {self.people_range}")
        low, high = self.image_size_range
        if not 32 <= low <= high:
            raise ValueError(
                f"image_size_range must be (min, max) pixels with 32 <= min <= max, got {self.image_size_range}"
            )
        if self.yaw_range_deg < 0 or not 0 <= self.back_facing_prob <= 1:
            raise ValueError(
                f"yaw_range_deg={self.yaw_range_deg} must be >= 0 and back_facing_prob={self.back_facing_prob} "
                "within [0, 1]"
            )
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {tuple(BACKGROUNDS)}, got {self.background!r}")
        if not 0 <= self.outside_prob <= 1 or self.min_center_distance < 0:
            raise ValueError(f"outside_prob={self.outside_prob} must be within [0, 1] and "
                             f"min_center_distance={self.min_center_distance} >= 0")
        if self.pose_noise_deg < 0 or not 0 <= self.pose_blend_prob <= 1:
            raise ValueError(f"pose_noise_deg={self.pose_noise_deg} must be >= 0 degrees and "
                             f"pose_blend_prob={self.pose_blend_prob} within [0, 1]")
        if self.pose_space not in POSE_SPACES:
            raise ValueError(f"pose_space must be one of {POSE_SPACES}, got {self.pose_space!r}")
        low, high = self.person_height_range
        if not 0 < low <= high:
            raise ValueError(
                f"person_height_range must satisfy 0 < min <= max, got {self.person_height_range}"
            )


VARIANTS: dict[str, SceneConfig] = {
    # One large, roughly centred person: easy detection, clean 3D supervision.
    "solo": SceneConfig(
        people_range=(1, 1),
        image_size_range=(224, 320),
        person_height_range=(0.6, 0.95),
        center_region=0.4,
        outside_prob=0.1,
        yaw_range_deg=60.0,
        back_facing_prob=0.05,
    ),
    # Several smaller people overlapping each other, some cut by the image border.
    "crowd": SceneConfig(
        people_range=(3, 8),
        image_size_range=(240, 320),
        person_height_range=(0.25, 0.6),
        center_region=1.0,
        outside_prob=0.3,
        yaw_range_deg=90.0,
        back_facing_prob=0.15,
        min_center_distance=0.3,
    ),
}


@dataclass
class SyntheticSample:
    """One generated image and its annotations (N people, 54 joints)."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    kp2ds: np.ndarray  # (N, 54, 3) float32 [x_px, y_px, vis]
    kp3ds: np.ndarray  # (N, 54, 3) float32, root-centred, camera axes, metres
    params: np.ndarray  # (N, 76) float32: global orient (camera axes) 3 + body pose 63 + betas 10
    root_trans: np.ndarray  # (N, 3) float32, camera-frame position of the root (mid-hip)
    cam_mat: np.ndarray  # (3, 3) float32 intrinsics
    person_index: np.ndarray  # (H, W) int8: the person each pixel shows, -1 for background (not cached)


# ---- clothing ----------------------------------------------------------------------------------------------------
SKIN, HAIR, SHIRT, SLEEVE, HAND, PANTS, SHIN, SHOE = range(8)
NUM_PARTS = 8

# Which part the bone ending at each SMPL joint belongs to (the bone runs from the joint's parent to it).
_BONE_PART = {
    1: PANTS, 2: PANTS, 3: SHIRT, 4: PANTS, 5: PANTS, 6: SHIRT, 7: SHIN, 8: SHIN, 9: SHIRT, 10: SHOE, 11: SHOE,
    12: SHIRT, 13: SHIRT, 14: SHIRT, 15: SKIN, 16: SHIRT, 17: SHIRT, 18: SHIRT, 19: SHIRT, 20: SLEEVE,
    21: SLEEVE, 22: HAND, 23: HAND,
}  # fmt: skip

_SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 160], [224, 172, 105], [198, 134, 66], [141, 85, 36], [92, 56, 30]], float
)
_HAIR_COLORS = np.array([[20, 15, 10], [60, 40, 25], [110, 75, 40], [200, 170, 110], [130, 130, 130]], float)


def _point_segment_distance(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(P, S) distances from points (P, 3) to segments starts[s] -> ends[s]."""
    direction = ends - starts
    length2 = np.maximum((direction**2).sum(-1), 1e-12)
    along = ((points[:, None] - starts[None]) * direction[None]).sum(-1) / length2
    closest = starts[None] + along.clip(0, 1)[..., None] * direction[None]
    return np.linalg.norm(points[:, None] - closest, axis=-1)


def body_part_labels(rest_verts: np.ndarray, rest_joints24: np.ndarray) -> np.ndarray:
    """(V,) clothing part of each vertex of a rest-pose mesh (SMPL axes: y up, z forward).

    Each vertex takes the part of its nearest bone; the head, hands and feet get an extra bone beyond their
    end joint. On the head, the top and back become hair.
    """
    starts, ends, parts = [], [], []
    for child, parent in enumerate(SMPL24_PARENTS):
        if parent >= 0:
            starts.append(rest_joints24[parent])
            ends.append(rest_joints24[child])
            parts.append(_BONE_PART[child])
    for end, parent, part in ((15, 12, SKIN), (22, 20, HAND), (23, 21, HAND), (10, 7, SHOE), (11, 8, SHOE)):
        direction = rest_joints24[end] - rest_joints24[parent]
        direction = direction / max(float(np.linalg.norm(direction)), 1e-9)
        starts.append(rest_joints24[end])
        ends.append(rest_joints24[end] + 0.12 * direction)
        parts.append(part)
    distances = _point_segment_distance(rest_verts, np.array(starts), np.array(ends))
    labels = np.array(parts)[distances.argmin(axis=1)]
    head = rest_joints24[15]
    is_hair = (labels == SKIN) & (
        (rest_verts[:, 1] > head[1] + 0.07)
        | ((rest_verts[:, 2] < head[2] - 0.03) & (rest_verts[:, 1] > head[1] - 0.04))
    )
    labels[is_hair] = HAIR
    return labels


def _clothing_palette(rng: np.random.Generator) -> np.ndarray:
    """(NUM_PARTS, 3) RGB colours of one person's outfit."""
    palette = np.empty((NUM_PARTS, 3))
    skin = _SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))] * rng.uniform(0.9, 1.05)
    shirt = random_color(rng, saturation=(0.2, 0.9), value=(0.3, 1.0))
    pants = random_color(rng, saturation=(0.1, 0.7), value=(0.15, 0.7))
    palette[SKIN] = palette[HAND] = skin
    palette[HAIR] = _HAIR_COLORS[int(rng.integers(len(_HAIR_COLORS)))]
    palette[SHIRT] = shirt
    palette[SLEEVE] = shirt if rng.random() < 0.5 else skin
    palette[PANTS] = pants
    palette[SHIN] = pants if rng.random() < 0.7 else skin
    palette[SHOE] = random_color(rng, saturation=(0.0, 0.5), value=(0.05, 0.4))
    return palette.clip(0, 255)


# ---- the scene generator ----------------------------------------------------------------------------------------
class SceneGenerator:
    """Draws synthetic samples of one variant with a given body model.

    Args:
        config: the variant's scene settings.
        body_model: a ``romp_hydra.body.smpl.BodyModel``: called with ``global_orient (N, 3)``,
            ``body_pose (N, 63)`` and ``betas (N, 10)`` float32 tensors it returns ``.vertices (N, V, 3)`` and
            ``.joints54 (N, 54, 3)``; ``.faces`` is (F, 3).
    """

    def __init__(self, config: SceneConfig, body_model: Any):
        self.config = config
        self.body_model = body_model
        faces = body_model.faces
        self.faces = np.asarray(faces.detach().cpu() if hasattr(faces, "detach") else faces, dtype=np.int64)
        rest_verts, rest_joints = self.pose_bodies(np.zeros((1, 76), np.float32))
        # With a zero global orient the rest mesh is still in SMPL's own axes (y up, z forward).
        labels = body_part_labels(rest_verts[0].astype(np.float64), rest_joints[0, :24].astype(np.float64))
        self.face_parts = labels[self.faces[:, 0]]

    def pose_bodies(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the body model on (N, 76) float32 params; returns root-centred (N, V, 3) vertices and
        (N, 54, 3) joints (float32, the frame of the global orient)."""
        tensor = torch.from_numpy(np.ascontiguousarray(params, dtype=np.float32))
        with torch.no_grad():
            output = self.body_model(
                global_orient=tensor[:, :3], body_pose=tensor[:, 3:66], betas=tensor[:, 66:76]
            )
        verts = output.vertices.detach().cpu().numpy()
        joints = output.joints54.detach().cpu().numpy()
        root = joints[:, list(ROOT_JOINTS)].mean(axis=1, keepdims=True)
        return verts - root, joints - root

    def sample_params(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """(count, 76) float32 parameters with camera-axes global orientations."""
        config = self.config
        params = np.empty((count, 76), np.float32)
        for i in range(count):
            params[i, :3] = sample_global_orient(rng, config.yaw_range_deg, config.back_facing_prob)
            if config.pose_space == "prototypes":
                params[i, 3:66] = sample_prototype_pose(rng, config.pose_noise_deg, config.pose_blend_prob)
            else:
                params[i, 3:66] = sample_body_pose(rng, config.pose_amplitude_range)
            params[i, 66:] = sample_betas(rng, NUM_BETAS)
        return params

    def generate(self, rng: np.random.Generator) -> SyntheticSample:
        """One image with its annotations; a pure function of the generator state."""
        config = self.config
        low, high = config.image_size_range
        width, height = (int(v) for v in rng.integers(low, high + 1, 2))
        fov = np.deg2rad(rng.uniform(*config.fov_range_deg))
        focal = 0.5 * max(width, height) / np.tan(fov / 2)
        cam_mat = np.array([[focal, 0, (width - 1) / 2.0], [0, focal, (height - 1) / 2.0], [0, 0, 1]])

        count = int(rng.integers(config.people_range[0], config.people_range[1] + 1))
        params = self.sample_params(rng, count)
        verts, joints = self.pose_bodies(params)
        people, translations = self._place_people(rng, verts, joints, width, height, cam_mat)
        background = BACKGROUNDS[config.background](rng, height, width)
        palettes = [_clothing_palette(rng) for _ in people]
        image, person_index, people, translations = self._render(
            background, verts, joints, people, translations, palettes, cam_mat
        )

        root_trans = np.array(translations, np.float64).reshape(-1, 3)
        kp3ds = joints[people]
        uv = _project(kp3ds.astype(np.float64) + root_trans[:, None], cam_mat)
        inside = (
            (uv[..., 0] >= 0) & (uv[..., 0] <= width - 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= height - 1)
        )
        return SyntheticSample(
            image=image,
            kp2ds=np.concatenate([uv, inside[..., None]], axis=-1).astype(np.float32),
            kp3ds=kp3ds.astype(np.float32),
            params=params[people],
            root_trans=root_trans.astype(np.float32),
            cam_mat=cam_mat.astype(np.float32),
            person_index=person_index.astype(np.int8),
        )

    def _place_people(
        self,
        rng: np.random.Generator,
        verts: np.ndarray,
        joints: np.ndarray,
        width: int,
        height: int,
        cam_mat: np.ndarray,
    ) -> tuple[list[int], list[np.ndarray]]:
        """Camera-frame root translations for the posed bodies; returns the placed bodies' indices and
        translations. A body whose torso centre cannot be put inside the image, apart from the others'
        centres, within ``_PLACEMENT_ATTEMPTS`` draws is left out."""
        min_distance = self.config.min_center_distance
        # Root-relative bounding boxes, used to size and place every body.
        box_lows, box_highs = verts.min(axis=1).astype(np.float64), verts.max(axis=1).astype(np.float64)
        people: list[int] = []
        translations: list[np.ndarray] = []
        centers: list[tuple[np.ndarray, float]] = []  # torso centre (px) and projected height of each
        for i in range(len(verts)):
            for _ in range(_PLACEMENT_ATTEMPTS):
                trans, pixel_height = self._place(rng, box_lows[i], box_highs[i], width, height, cam_mat)
                center = _project(joints[i, list(TORSO_JOINTS)].mean(axis=0) + trans, cam_mat)
                if not (0 <= center[0] <= width - 1 and 0 <= center[1] <= height - 1):
                    continue
                too_close = any(
                    np.linalg.norm(center - other) < min_distance * min(pixel_height, other_height)
                    for other, other_height in centers
                )
                if not too_close:
                    people.append(i)
                    translations.append(trans)
                    centers.append((center, pixel_height))
                    break
        return people, translations

    def _render(
        self,
        background: np.ndarray,
        verts: np.ndarray,
        joints: np.ndarray,
        people: list[int],
        translations: list[np.ndarray],
        palettes: list[np.ndarray],
        cam_mat: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, list[int], list[np.ndarray]]:
        """Render the placed people; people whose torso is hidden behind others are removed (and the
        image rendered again without them). Returns image, person-index map, people, translations."""
        camera = PinholeCamera(focal=float(cam_mat[0, 0]), principal_point=(cam_mat[0, 2], cam_mat[1, 2]))
        while True:
            image, person_index = render_meshes(
                background,
                [verts[i] + t for i, t in zip(people, translations)],
                self.faces,
                [palette[self.face_parts] for palette in palettes],
                camera=camera,
                cull_backfaces=True,  # the body model's faces point outwards: back faces are hidden anyway
                return_mesh_index=True,
            )
            hidden = {
                k
                for k, (i, t) in enumerate(zip(people, translations))
                if _hidden_by_others(joints[i] + t, cam_mat, person_index, k)
            }
            if not hidden:
                return image, person_index, people, translations
            # Removing people only uncovers the others, so this loop ends.
            keep = [k for k in range(len(people)) if k not in hidden]
            people = [people[k] for k in keep]
            translations = [translations[k] for k in keep]
            palettes = [palettes[k] for k in keep]

    def _place(
        self,
        rng: np.random.Generator,
        low: np.ndarray,
        high: np.ndarray,
        width: int,
        height: int,
        cam_mat: np.ndarray,
    ) -> tuple[np.ndarray, float]:
        """A camera-frame root translation for a body with root-relative bounding box [low, high], and its
        projected height in pixels."""
        config = self.config
        focal, cx, cy = cam_mat[0, 0], cam_mat[0, 2], cam_mat[1, 2]
        anchor = (low + high) / 2  # bounding-box centre relative to the root
        pixel_height = rng.uniform(*config.person_height_range) * height
        depth = focal * (high[1] - low[1]) / pixel_height
        pixel_width = focal * (high[0] - low[0]) / depth
        u = _sample_position(rng, width, pixel_width, config.center_region)
        v = _sample_position(rng, height, pixel_height, config.center_region)
        if rng.random() < config.outside_prob:
            # Put the box centre within half a box of a border, so part of the body leaves the image.
            border = int(rng.integers(4))
            inset = rng.uniform(0.05, 0.45)
            if border == 0:
                u = inset * pixel_width
            elif border == 1:
                u = width - 1 - inset * pixel_width
            elif border == 2:
                v = inset * pixel_height
            else:
                v = height - 1 - inset * pixel_height
        trans = np.array([depth * (u - cx) / focal - anchor[0], depth * (v - cy) / focal - anchor[1], depth])
        return trans, float(pixel_height)


def _sample_position(rng: np.random.Generator, size: int, extent: float, center_region: float) -> float:
    """A box-centre coordinate that keeps a box of ``extent`` pixels inside ``size`` where possible."""
    middle = (size - 1) / 2.0
    slack = max((size - 1 - extent) / 2.0, 0.0)
    return middle + center_region * rng.uniform(-slack, slack)


def _project(points: np.ndarray, cam_mat: np.ndarray) -> np.ndarray:
    """Pinhole projection of camera-frame points (..., 3) -> pixels (..., 2)."""
    points = np.asarray(points, np.float64)
    return points[..., :2] / points[..., 2:3] * np.diag(cam_mat)[:2] + cam_mat[:2, 2]


def _hidden_by_others(
    camera_joints: np.ndarray, cam_mat: np.ndarray, mesh_index: np.ndarray, person: int
) -> bool:
    """True if fewer than ``_MIN_VISIBLE_TORSO_JOINTS`` of the person's torso joints land on its own pixels
    and at least one lands on another person's (a torso seen edge-on or cut by the border is no reason)."""
    height, width = mesh_index.shape
    uv = np.rint(_project(camera_joints[list(TORSO_JOINTS)], cam_mat)).astype(np.int64)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    shown = mesh_index[uv[inside, 1], uv[inside, 0]]
    return bool(
        (shown == person).sum() < _MIN_VISIBLE_TORSO_JOINTS and ((shown >= 0) & (shown != person)).any()
    )
