"""Pictures of intermediate training and validation results (ROMP's result_image_train/ and result_images/).

One row per image: input | predicted meshes over the input | projected 2D joints (prediction, with the ground
truth in thin lines) | ground-truth centre map | predicted centre map. Saved under the run directory and logged
to the tracker.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from romp_hydra.viz.draw import (
    concat_panels,
    draw_skeleton,
    heatmap_overlay,
    label_panel,
    normalized_to_pixels,
    to_bgr,
)
from romp_hydra.viz.render import WeakPerspectiveCamera, render_meshes

log = logging.getLogger(__name__)

GT_COLORS = {"left": (120, 120, 255), "right": (255, 120, 120), "centre": (200, 200, 200)}
PANEL_NAMES = ("input", "mesh", "joints 2D", "centres GT", "centres pred")


def _image_rgb(batch_image: torch.Tensor, index: int) -> np.ndarray:
    image = batch_image[index].detach().cpu()
    if image.dtype != torch.uint8:
        image = image.clamp(0, 255).to(torch.uint8)
    return np.ascontiguousarray(image.permute(1, 2, 0).numpy())


def image_row(batch: Mapping[str, Any], maps: Mapping[str, torch.Tensor], people: Mapping[str, torch.Tensor],
              index: int, faces: np.ndarray) -> np.ndarray:
    """The five panels of one image of the batch, side by side."""
    image = _image_rgb(batch["image"], index)
    size = image.shape[0]
    mine = (people["batch_idx"] == index).nonzero(as_tuple=True)[0].tolist() if len(people["batch_idx"]) else []

    cams = [WeakPerspectiveCamera(*(float(v) for v in people["cam"][i].detach().cpu())) for i in mine]
    cams_ok = [i for i, cam in zip(mine, cams) if cam.scale > 1e-3]
    mesh = image
    if cams_ok:
        verts = [people["verts"][i].detach().cpu().float().numpy() for i in cams_ok]
        cameras = [WeakPerspectiveCamera(*(float(v) for v in people["cam"][i].detach().cpu())) for i in cams_ok]
        try:
            mesh = render_meshes(image, verts, faces, camera=cameras, alpha=0.8)
        except ValueError as err:  # a degenerate prediction early in training must not stop the run
            log.debug("mesh rendering skipped: %s", err)

    joints = image.copy()
    gt = batch["kp2d"][index].detach().cpu().numpy()
    for person in np.flatnonzero(batch["person_mask"][index].cpu().numpy()):
        pixels, present = normalized_to_pixels(gt[person], size)
        joints = draw_skeleton(joints, pixels, present, colors=GT_COLORS, thickness=1, radius=1)
    radius = max(1, size // 192)  # small inputs (quickstart: 128 px) need small joint dots
    for i in mine:
        pixels, present = normalized_to_pixels(people["pj2d"][i].detach().cpu().float().numpy(), size)
        present &= np.all(np.abs(pixels - size / 2) < 2 * size, axis=-1)
        joints = draw_skeleton(joints, pixels, present, thickness=radius, radius=radius)

    gt_map = batch["centermap"][index, 0].detach().cpu().float().numpy()
    pred_map = maps["center_map"][index, 0].detach().cpu().float().numpy()
    panels = [image, mesh, joints, heatmap_overlay(image, gt_map), heatmap_overlay(image, pred_map)]
    return concat_panels([label_panel(p, name) for p, name in zip(panels, PANEL_NAMES)])


class TrainingPictures:
    """Draws training and validation pictures into `<run_dir>/pictures/{train,val}/` and logs them."""

    def __init__(self, run_dir: Path, tracker, faces: np.ndarray, input_size: int, images_per_picture: int = 4):
        self.run_dir, self.tracker = Path(run_dir), tracker
        self.faces = np.asarray(faces, dtype=np.int64)
        self.input_size, self.images_per_picture = input_size, images_per_picture

    def _save(self, kind: str, rows: list[np.ndarray], step: int, suffix: str = "") -> Path | None:
        if not rows:
            return None
        width = max(row.shape[1] for row in rows)
        rows = [np.pad(row, ((0, 4), (0, width - row.shape[1]), (0, 0))) for row in rows]
        picture = np.concatenate(rows, axis=0)
        folder = self.run_dir / "pictures" / kind
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"step_{step:07d}{suffix}.jpg"
        cv2.imwrite(str(path), to_bgr(picture), [cv2.IMWRITE_JPEG_QUALITY, 90])
        self.tracker.log_image(picture, kind, step)
        return path

    def draw_train(self, batch: Mapping[str, Any], maps: Mapping[str, torch.Tensor],
                   people: Mapping[str, torch.Tensor], step: int) -> Path | None:
        count = min(self.images_per_picture, int(batch["image"].shape[0]))
        rows = [image_row(batch, maps, people, i, self.faces) for i in range(count)]
        names = sorted(set(batch["dataset"][:count]))
        return self._save("train", rows, step, "_" + "-".join(names) if names else "")

    def draw_val(self, batch: Mapping[str, Any], maps: Mapping[str, torch.Tensor],
                 people: Mapping[str, torch.Tensor], step: int, limit: int = 4) -> Path | None:
        count = min(limit, int(batch["image"].shape[0]))
        return self._save("val", [image_row(batch, maps, people, i, self.faces) for i in range(count)], step)
