"""Fixtures of the evaluation tests: the stand-in body model, a network that returns hand-made maps, and
hand-made evaluation batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from romp_hydra import batch as masks
from romp_hydra.body.smpl import BodyModel
from romp_hydra.body.standin import standin_is_complete, write_standin
from romp_hydra.geometry.rotations import axis_angle_to_rotmat, rotmat_to_rot6d
from romp_hydra.models.predictor import Predictor
from romp_hydra.models.romp import PARAMS_DIM

MAP_SIZE = 8
INPUT_SIZE = 64
MAX_PERSON = 4


@pytest.fixture(scope="session")
def predictor(shared_cache_dir: Path) -> Predictor:
    """The stand-in body model behind a Predictor, as evaluation builds it (body model not root aligned)."""
    model_dir = shared_cache_dir / "standin_smpl"
    if not standin_is_complete(model_dir):
        write_standin(model_dir)
    return Predictor(BodyModel(model_dir, root_align=False, kind="standin"), root_align=True).eval()


def person_params(
    global_orient: tuple[float, float, float] = (0.0, 0.0, 0.0),
    body_pose_scale: float = 0.0,
    betas: float = 0.0,
    seed: int = 0,
) -> torch.Tensor:
    """A 145-vector: camera (1, 0, 0), global orient (axis-angle) and a random body pose of the given size, as
    the network's 6D layout."""
    generator = torch.Generator().manual_seed(seed)
    axis_angle = torch.zeros(22, 3)
    axis_angle[0] = torch.tensor(global_orient)
    axis_angle[1:] = (torch.rand(21, 3, generator=generator) - 0.5) * 2 * body_pose_scale
    params = torch.zeros(PARAMS_DIM)
    params[0] = 1.0
    params[3:135] = rotmat_to_rot6d(axis_angle_to_rotmat(axis_angle)).reshape(-1)
    params[135:] = betas
    return params


class MapNet(nn.Module):
    """Stands in for ROMPNet: returns the maps of image `i`, where `i` is the image's first pixel value."""

    def __init__(self, center_maps: torch.Tensor, params_maps: torch.Tensor):
        super().__init__()
        self.register_buffer("center_maps", center_maps)
        self.register_buffer("params_maps", params_maps)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        ids = images[:, 0, 0, 0].long()
        return {"center_map": self.center_maps[ids], "params_maps": self.params_maps[ids]}


class Scene:
    """Hand-made images: detections (centre-map peaks with parameters) and GT people, then batches of them."""

    def __init__(self, num_images: int):
        self.num_images = num_images
        self.center_maps = torch.zeros(num_images, 1, MAP_SIZE, MAP_SIZE)
        self.params_maps = torch.zeros(num_images, PARAMS_DIM, MAP_SIZE, MAP_SIZE)
        self.people: list[list[dict]] = [[] for _ in range(num_images)]
        self.labelled = [True] * num_images
        self.paths = [f"/data/set/seq_{i % 2}/image_{i:05d}.jpg" for i in range(num_images)]

    def detect(self, image: int, cell_yx: tuple[int, int], score: float = 0.9) -> None:
        """A centre-map peak (a detection) at `cell_yx`."""
        self.center_maps[image, 0, cell_yx[0], cell_yx[1]] = score

    def set_params(self, image: int, cell_yx: tuple[int, int], params: torch.Tensor) -> None:
        self.params_maps[image, :, cell_yx[0], cell_yx[1]] = params

    def add_person(
        self,
        image: int,
        cell_yx: tuple[int, int],
        kp3d54: np.ndarray | None,
        params: torch.Tensor | None = None,
    ) -> None:
        """A GT person whose centre lies in the middle of map cell `cell_yx`."""
        y, x = cell_yx
        center = np.array([(x + 0.5) / MAP_SIZE * 2 - 1, (y + 0.5) / MAP_SIZE * 2 - 1], np.float32)
        self.people[image].append({"center": center, "kp3d": kp3d54, "params": params})

    def net(self) -> MapNet:
        return MapNet(self.center_maps.clone(), self.params_maps.clone())

    def batches(self, batch_size: int) -> list[dict]:
        return [
            self.batch(list(range(start, min(start + batch_size, self.num_images))))
            for start in range(0, self.num_images, batch_size)
        ]

    def batch(self, images: list[int]) -> dict:
        count = len(images)
        batch = {
            "image": torch.zeros(count, 3, INPUT_SIZE, INPUT_SIZE, dtype=torch.uint8),
            "kp3d": torch.full((count, MAX_PERSON, 54, 3), -2.0),
            "params": torch.full((count, MAX_PERSON, 76), -10.0),
            "centers": torch.full((count, MAX_PERSON, 2), -2.0),
            "person_mask": torch.zeros(count, MAX_PERSON, dtype=torch.bool),
            "valid_masks": torch.zeros(count, MAX_PERSON, masks.NUM_VALID_MASKS, dtype=torch.bool),
            "all_persons_labelled": torch.tensor([self.labelled[i] for i in images]),
            "dataset": ["hand_made"] * count,
            "imgpath": [self.paths[i] for i in images],
        }
        for row, image in enumerate(images):
            batch["image"][row] = image
            for slot, person in enumerate(self.people[image]):
                batch["centers"][row, slot] = torch.from_numpy(person["center"])
                batch["person_mask"][row, slot] = True
                if person["kp3d"] is not None:
                    batch["kp3d"][row, slot] = torch.as_tensor(person["kp3d"], dtype=torch.float32)
                    batch["valid_masks"][row, slot, masks.KP3D] = True
                if person["params"] is not None:
                    batch["params"][row, slot] = person["params"]
                    for column in (masks.GLOBAL_ORIENT, masks.BODY_POSE, masks.BETAS):
                        batch["valid_masks"][row, slot, column] = True
        return batch


def predicted(predictor: Predictor, params: torch.Tensor) -> dict[str, np.ndarray]:
    """What the predictor makes of one parameter vector: joints54 and joints_h36m17 as numpy (metres)."""
    with torch.no_grad():
        people = predictor(params[None])
    return {key: people[key][0].double().numpy() for key in ("joints54", "joints_h36m17", "verts")}


def smpl76(params: torch.Tensor) -> torch.Tensor:
    """The GT-style 76 SMPL parameters (axis-angle) of a network parameter vector built by `person_params`."""
    from romp_hydra.geometry.rotations import rot6d_to_rotmat, rotmat_to_axis_angle

    axis_angle = rotmat_to_axis_angle(rot6d_to_rotmat(params[3:135].reshape(22, 6))).reshape(-1)
    return torch.cat([axis_angle, params[135:]])
