"""PoseTrack 2018: multi-person video frames with 2D keypoints and track ids (per-video COCO-style json)."""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import numpy as np

from romp_hydra.data.masks import vmask_2d_rows, vmask_3d_rows
from romp_hydra.data.sources._shared_2d import (
    ImageSizes,
    annotation_file_or_packed,
    joints_to_54,
    options_tag,
)
from romp_hydra.data.sources._shared_3d import load_romp_annots
from romp_hydra.data.store import StoreBackedSource, StoreFormatError

log = logging.getLogger(__name__)

__all__ = ["PoseTrack"]

SPLITS = ("train", "val")
NUM_JOINTS = 17

# One labelled frame: (image path relative to root, raw (N, 17, 3) persons, global track ids (N,)).
Frame = tuple[str, np.ndarray, np.ndarray]


class PoseTrack(StoreBackedSource):
    """PoseTrack 2018: several people per video frame with 17 2D joints and track ids; no 3D.

    Annotations provided: 2D keypoints in PoseTrack's order (nose, head bottom, head top, ears, then COCO's
    shoulders .. ankles) mapped by name: head bottom -> Neck 12 and head top -> Head_top 48 (MPII's upper neck and
    head top; ROMP drops the head top through a name collision, see `joint_sets.POSETRACK_17`); the ears are not
    annotated in PoseTrack. Track ids are made unique over the split: each (video, track_id) pair gets its own
    global id. vmask_2d [T, T, F] (ROMP V2.1: persons inside PoseTrack's ignore regions are not labelled, so the
    centre-map loss is off), vmask_3d all False.

    Only frames with `is_labeled` are used; a person needs a visibility sum of at least `min_person_vis_sum` (2, as
    ROMP); frames left without persons are dropped.

    Official site: https://posetrack.net (2018 release: images/ and annotations/{train,val}/<video>.json);
    ROMP's parsed annots_<split>.npz: the Google Drive folder of ROMP's docs/dataset.md.

    Args:
        split: 'train' or 'val'.
        annotations: 'auto' | 'official' (annotations/<split>/*.json) | 'romp' (annots_<split>.npz).
        frame_stride: keep every n-th labelled frame of each video (consecutive frames are near duplicates).
        min_person_vis_sum: the least number of labelled joints a person needs.
    """

    homepage: ClassVar[str] = (
        "https://posetrack.net (PoseTrack 2018: images and annotations); ROMP's parsed annots_*.npz: the Google "
        "Drive folder of ROMP's docs/dataset.md"
    )
    expected_layout: ClassVar[str] = """
        images/<split>/<video>/<frame:06d>.jpg
        annotations/<split>/<video>.json    per-video COCO-style json (or ROMP's annots_<split>.npz)
    """
    provides: ClassVar[str] = "2D keypoints (PoseTrack 17), track ids over the split; no 3D"

    def __init__(self, root: str | Path, split: str = "train", *, key: str | None = None,
                 store_dir: str | Path | None = None, annotations: str = "auto", frame_stride: int = 1,
                 min_person_vis_sum: float = 2):
        if split not in SPLITS:
            raise ValueError(f"posetrack split={split!r}: use one of {', '.join(SPLITS)}")
        if int(frame_stride) < 1:
            raise ValueError(f"posetrack frame_stride={frame_stride}: must be a positive integer")
        super().__init__(root, split, key=key or "posetrack", store_dir=store_dir)
        self.frame_stride = int(frame_stride)
        self.min_person_vis_sum = float(min_person_vis_sum)
        self.annotation_dir = self.root / "annotations" / split
        self.video_files = sorted(self.annotation_dir.glob("*.json")) if self.annotation_dir.is_dir() else []
        self.annotations = annotations
        # The first video json stands for the folder (it is a placeholder path when there is none, for the message).
        self.official_file = self.video_files[0] if self.video_files else self.annotation_dir / "<video>.json"
        self.annotation_kind, self.annotation_path = annotation_file_or_packed(
            self, annotations, self.official_file, self.root / f"annots_{split}.npz")

    @property
    def store_path(self) -> Path:
        tag = options_tag(annotations=self.annotations, frame_stride=self.frame_stride,
                          min_person_vis_sum=self.min_person_vis_sum)
        return self.store_dir / f"{self.key}_{self.split}_{tag}.npz"

    def annotation_files(self) -> list[Path]:
        if self.annotation_kind == "official":
            return list(self.video_files)
        return [self.annotation_path or self.official_file]

    def read_annotations(self) -> Iterator[Mapping[str, Any]]:
        frames = self._official_frames() if self.annotation_kind == "official" else self._romp_frames()
        sizes = ImageSizes(self.root, self.key)
        video_sizes: dict[str, tuple[int, int] | None] = {}  # all frames of a video share one size
        images = persons = 0
        for imgpath, raw, ids in frames:
            keep = raw[:, :, 2].sum(axis=1) >= self.min_person_vis_sum if len(raw) else np.zeros(0, bool)
            if not keep.any():
                continue
            video = str(PurePosixPath(imgpath).parent)
            if video not in video_sizes:
                video_sizes[video] = sizes(imgpath)
            if video_sizes[video] is None:
                continue
            kp2ds = np.stack([joints_to_54(joints, "posetrack_17") for joints in raw[keep]])
            count = len(kp2ds)
            images, persons = images + 1, persons + count
            yield {
                "imgpath": imgpath,
                "img_size": video_sizes[video],
                "kp2ds": kp2ds,
                "track_ids": ids[keep],
                "vmask_2d": vmask_2d_rows(count, pose=True, track_ids=True, all_labelled=False),
                "vmask_3d": vmask_3d_rows(count),
            }
        sizes.report()
        log.info("%s %s: %d frames, %d persons (frame stride %d)", self.key, self.split, images, persons,
                 self.frame_stride)

    def _official_frames(self) -> Iterator[Frame]:
        global_ids: dict[tuple[str, int], int] = {}
        for path in self.video_files:
            with open(path) as file:
                content = json.load(file)
            try:
                labelled = sorted((image for image in content["images"] if image.get("is_labeled")),
                                  key=lambda image: str(image["file_name"]))
                by_image: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
                for annotation in content.get("annotations", []):
                    if "keypoints" in annotation:
                        by_image[annotation["image_id"]].append(annotation)
            except (KeyError, TypeError) as err:
                raise StoreFormatError(f"{path}: expected PoseTrack's per-video json with 'images' (file_name, id, "
                                       f"is_labeled) and 'annotations' (image_id, track_id, keypoints): {err}") from err
            for image in labelled[::self.frame_stride]:
                people = by_image.get(image["id"], [])
                raw = np.zeros((len(people), NUM_JOINTS, 3), np.float32)
                ids = np.zeros(len(people), np.int64)
                for j, person in enumerate(people):
                    values = np.asarray(person["keypoints"], dtype=np.float32)
                    if values.size != NUM_JOINTS * 3:
                        raise StoreFormatError(f"{path}: an annotation of {image['file_name']} has {values.size} "
                                               f"keypoint values, expected 17 x (x, y, v)")
                    raw[j] = values.reshape(NUM_JOINTS, 3)
                    ids[j] = global_ids.setdefault((path.stem, int(person["track_id"])), len(global_ids))
                yield str(image["file_name"]), raw, ids

    def _romp_frames(self) -> Iterator[Frame]:
        """ROMP's archive: `annot` = {file name: [(N, 17, 3) joints, (N,) global ids]}; the stride is applied per
        video folder over the sorted frames."""
        annots = load_romp_annots(self.annotation_path, "annot")
        if not isinstance(annots, Mapping):
            raise StoreFormatError(f"{self.annotation_path}: member 'annot' is a {type(annots).__name__}, expected "
                                   f"{{file name: [joints (N, 17, 3), ids (N,)]}}")
        by_video: dict[str, list[str]] = defaultdict(list)
        for name in sorted(annots):
            by_video[str(PurePosixPath(self._image_path(name)).parent)].append(name)
        for video in sorted(by_video):
            for name in by_video[video][::self.frame_stride]:
                try:
                    joints, ids = annots[name][0], annots[name][1]
                    raw = np.asarray(joints, dtype=np.float32).reshape(-1, NUM_JOINTS, 3)
                    ids = np.asarray(ids, dtype=np.int64).reshape(len(raw))
                except (IndexError, ValueError, TypeError) as err:
                    raise StoreFormatError(f"{self.annotation_path}: entry {name} is not [joints (N, 17, 3), "
                                           f"ids (N,)]: {err}") from err
                yield self._image_path(name), raw, ids

    def _image_path(self, name: str) -> str:
        """ROMP's keys are the json file names ('images/<split>/<video>/<frame>.jpg'); accept bare
        '<video>/<frame>.jpg' too."""
        name = str(name)
        return name if name.startswith("images/") else f"images/{self.split}/{name}"
