"""Run a checkpoint on your own images, a folder of images, or a video (ROMP's `romp --mode=image|video`):

  python -m romp_hydra.predict ckpt_path=<checkpoint> input=<image | folder | video> out=<dir>

For every image (every frame of a video) it writes into `out`:

* `<name>.png`: every detected person's mesh over the image, drawn by the renderer of the training pictures
  (`romp_hydra.viz.render`);
* `<name>.npz`: `image_hw`, `centers` (N, 2; x, y), `scores` (N,), `cam` (N, 3; ROMP's weak-perspective
  (s, tx, ty) of the letterboxed input), `cam_trans` (N, 3), `global_orient` (N, 3) and `body_pose` (N, 63)
  (SMPL axis-angle), `betas` (N, 10), `joints2d` (N, 54, 2), `joints3d` (N, 54, 3; metres, root-aligned as in
  training), `verts` (N, 6890, 3);
* `<name>.json`: the same without the vertices, per person.

2D points (centres, joints) are pixels of the original image. A video also gives `<name>_overlay.mp4`.
A training checkpoint carries its architecture and body model (`use_ckpt_arch`); runs on CUDA when present
(`device=auto`), else the CPU. Every input is checked before the model is built.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, open_dict

from romp_hydra.preflight import PreflightError, exit_with_problems

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


@dataclass(frozen=True)
class Inputs:
    """What `input=` names: image files (a file or a folder's images), or one video."""

    images: list[Path]
    video: Path | None = None
    num_frames: int = 0

    @property
    def count(self) -> int:
        return self.num_frames if self.video is not None else len(self.images)


def find_inputs(path: str | Path) -> tuple[Inputs | None, list[str]]:
    """The inputs under `path`, or None and the problems (with fixes) that stop it."""
    import cv2

    path = Path(str(path)).expanduser()
    supported = f"images ({', '.join(IMAGE_SUFFIXES)}) or videos ({', '.join(VIDEO_SUFFIXES)})"
    if not path.exists():
        return None, [
            f"input={path}: no such file or folder\n  fix: give an image, a folder of images or a video"
        ]
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            return None, [f"input={path}: the folder holds no images\n  fix: put {supported} there"]
        unreadable = [p.name for p in images if cv2.haveImageReader(str(p)) is False]
        if unreadable:
            return None, [
                f"input={path}: cannot read {', '.join(unreadable[:5])}\n  fix: remove or re-save them"
            ]
        return Inputs(images=images), []
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        if cv2.imread(str(path)) is None:
            return None, [f"input={path}: not a readable image\n  fix: re-save it as .jpg or .png"]
        return Inputs(images=[path]), []
    if suffix in VIDEO_SUFFIXES:
        capture = cv2.VideoCapture(str(path))
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        capture.release()
        if frames <= 0:
            return None, [
                f"input={path}: OpenCV cannot read frames from this video\n  fix: convert it to .mp4 "
                "(ffmpeg -i IN -c:v libx264 OUT.mp4) or extract its frames into a folder"
            ]
        return Inputs(images=[], video=path, num_frames=frames), []
    return None, [f"input={path}: unsupported file type '{path.suffix}'\n  fix: give {supported}"]


def check_output_dir(out: str | Path) -> list[str]:
    out = Path(str(out)).expanduser()
    if out.exists() and not out.is_dir():
        return [f"out={out}: is a file\n  fix: give a folder (created if missing)"]
    parent = next((p for p in [out, *out.parents] if p.exists()), None)
    if parent is None or not os.access(parent, os.W_OK):
        return [f"out={out}: cannot create or write it\n  fix: give a folder you can write to"]
    return []


def prepare(cfg: DictConfig) -> Inputs:
    """Adopt the checkpoint's architecture, then check every input at once (PreflightError lists them all)."""
    from romp_hydra.evaluation.run import adopt_checkpoint_architecture, read_checkpoint_info
    from romp_hydra.preflight import find_problems

    problems = []
    ckpt = Path(str(cfg.ckpt_path)).expanduser()
    if not ckpt.is_file():
        problems.append(
            f"ckpt_path={cfg.ckpt_path}: no such file\n  fix: give a checkpoint (training writes "
            "<run dir>/checkpoints/best.pt and last.pt)"
        )
    elif cfg.use_ckpt_arch:
        info = read_checkpoint_info(ckpt)
        if info.config is not None:
            adopted = adopt_checkpoint_architecture(cfg, info.config)
            log.info("from the checkpoint's training config: %s", ", ".join(adopted) or "nothing")
    with open_dict(cfg):
        cfg.backbone.pretrained = None  # the checkpoint holds every weight
        if cfg.center_threshold is not None:
            cfg.model.center_threshold = float(cfg.center_threshold)
    inputs, input_problems = find_inputs(cfg.input)
    problems += input_problems + check_output_dir(cfg.out)
    problems += [p for p in find_problems(cfg, "predict") if not p.startswith("ckpt_path=")]
    if problems:
        raise PreflightError("predict", problems)
    return inputs


def frames(inputs: Inputs) -> Iterator[tuple[str, np.ndarray]]:
    """(name, RGB image) for each image or video frame."""
    import cv2

    if inputs.video is None:
        for path in inputs.images:
            yield path.stem, cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        return
    capture = cv2.VideoCapture(str(inputs.video))
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield f"{inputs.video.stem}_{index:06d}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, tuple[float, float], float]:
    """The network input (the whole image centred in a square, as evaluation feeds it), and the box used."""
    from romp_hydra.data.augment import build_affine, letterbox_box, warp_image

    center, side = letterbox_box(*image.shape[:2])
    return warp_image(image, build_affine(center, side, 0.0, False, size), size), center, side


def to_original(normalized: np.ndarray, center: tuple[float, float], side: float) -> np.ndarray:
    """Normalised [-1, 1] input coordinates -> original-image pixels (inverse of the letterbox)."""
    return normalized * (side / 2.0) + np.asarray(center)


def people_arrays(
    people: dict, center_map_size: int, center: tuple[float, float], side: float, image_hw: tuple[int, int]
) -> dict[str, np.ndarray]:
    """The saved arrays of one image's people (see the module docstring)."""
    from romp_hydra.geometry.camera import cam_to_translation

    def arr(name: str) -> np.ndarray:
        return people[name].detach().float().cpu().numpy()

    cells = people["center_yx"].detach().cpu().numpy().astype(np.float64)
    cell_centres = (cells[:, ::-1] + 0.5) / center_map_size * 2.0 - 1.0  # (y, x) cells -> normalised (x, y)
    return {
        "image_hw": np.asarray(image_hw, dtype=np.int64),
        "centers": to_original(cell_centres, center, side).astype(np.float32),
        "scores": arr("score"),
        "cam": arr("cam"),
        "cam_trans": cam_to_translation(people["cam"].detach().float()).cpu().numpy(),
        "global_orient": arr("global_orient"),
        "body_pose": arr("body_pose"),
        "betas": arr("betas"),
        "joints2d": to_original(arr("pj2d").astype(np.float64), center, side).astype(np.float32),
        "joints3d": arr("joints54"),
        "verts": arr("verts"),
    }


def summary(name: str, arrays: dict[str, np.ndarray]) -> dict:
    keys = (
        "centers",
        "scores",
        "cam",
        "cam_trans",
        "global_orient",
        "body_pose",
        "betas",
        "joints2d",
        "joints3d",
    )
    people = [
        {key: np.round(arrays[key][i].astype(np.float64), 5).tolist() for key in keys}
        for i in range(len(arrays["scores"]))
    ]
    return {
        "image": name,
        "image_hw": arrays["image_hw"].tolist(),
        "num_people": len(people),
        "units": {"centers": "px", "joints2d": "px", "joints3d": "m", "cam": "normalised (s, tx, ty)"},
        "people": people,
    }


def overlay(image: np.ndarray, arrays: dict[str, np.ndarray], faces: np.ndarray) -> np.ndarray:
    """Meshes over the original image: rendered on its letterbox square at full resolution, then cut back."""
    from romp_hydra.viz.render import WeakPerspectiveCamera, render_meshes

    height, width = image.shape[:2]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    square = np.zeros((side, side, 3), np.uint8)
    square[top : top + height, left : left + width] = image
    keep = [i for i in range(len(arrays["scores"])) if arrays["cam"][i, 0] > 1e-3]
    if not keep:
        return image.copy()
    cameras = [WeakPerspectiveCamera(*(float(v) for v in arrays["cam"][i])) for i in keep]
    try:
        drawn = render_meshes(square, [arrays["verts"][i] for i in keep], faces, camera=cameras, alpha=0.8)
    except ValueError as err:  # a degenerate prediction: keep the image
        log.warning("mesh overlay skipped: %s", err)
        return image.copy()
    return drawn[top : top + height, left : left + width]


def predict(cfg: DictConfig) -> Path:
    """Run the checkpoint over the inputs; returns the output folder."""
    import cv2
    import torch
    from tqdm import tqdm

    from romp_hydra.config.runtime import select_device
    from romp_hydra.evaluation.run import build_model

    inputs = prepare(cfg)
    device = select_device(str(cfg.device))
    net, predictor, report = build_model(cfg, device)
    net.eval()
    from romp_hydra.models.model import PeoplePicker, forward_step

    picker = PeoplePicker(
        matching=str(cfg.model.matching),
        center_threshold=float(cfg.model.center_threshold),
        max_detections=int(cfg.model.max_detections),
    )
    faces = predictor.body_model.faces.cpu().numpy()
    size, map_size = int(cfg.data.input_size), int(cfg.data.centermap_size)
    out = Path(str(cfg.out)).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    writer = None
    total_people = 0
    with torch.inference_mode():
        for name, image in tqdm(frames(inputs), total=inputs.count, desc="predict", unit="img"):
            square, center, side = letterbox(image, size)
            batch = torch.from_numpy(np.ascontiguousarray(square.transpose(2, 0, 1)))[None]
            people = forward_step(net, predictor, batch, device, picker, precision=str(cfg.precision))
            arrays = people_arrays(people, map_size, center, side, image.shape[:2])
            total_people += len(arrays["scores"])
            np.savez_compressed(out / f"{name}.npz", **arrays)
            (out / f"{name}.json").write_text(json.dumps(summary(name, arrays), indent=1))
            drawn = cv2.cvtColor(overlay(image, arrays, faces), cv2.COLOR_RGB2BGR) if cfg.render else None
            if drawn is not None:
                cv2.imwrite(str(out / f"{name}.png"), drawn)
                if inputs.video is not None:
                    if writer is None:
                        fps = cv2.VideoCapture(str(inputs.video)).get(cv2.CAP_PROP_FPS) or 25.0
                        writer = cv2.VideoWriter(
                            str(out / f"{inputs.video.stem}_overlay.mp4"),
                            cv2.VideoWriter_fourcc(*"mp4v"),
                            fps,
                            drawn.shape[1::-1],
                        )
                    writer.write(drawn)
    if writer is not None:
        writer.release()
    log.info("%d image(s), %d people -> %s", inputs.count, total_people, out)
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from romp_hydra.config import ConfigError

    try:
        predict(cfg)
    except (PreflightError, ConfigError) as err:
        exit_with_problems(err)


if __name__ == "__main__":
    main()
