"""The synthetic sources: rendered people with exact 2D, 3D and SMPL annotations, generated on first use.

``SyntheticSolo`` gives one large person per image, ``SyntheticCrowd`` 3-8 smaller people who overlap
and leave the frame. Both generate their split in ``__init__`` (in the main process, before DataLoader
workers start) and cache it under ``root`` (see ``romp_hydra.data.synthetic.cache``); later constructions
only read the cache.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from romp_hydra.data.base import SourceDataset, load_image
from romp_hydra.data.store import PackedStore
from romp_hydra.data.synthetic.cache import ANNOTATION_FILE, ensure_synthetic_split
from romp_hydra.data.synthetic.generator import VARIANTS, SceneConfig

__all__ = ["SCENE_OPTIONS", "SyntheticCrowd", "SyntheticSolo", "SyntheticSource"]


class SyntheticSource(SourceDataset):
    """Base of the synthetic sources; a subclass names its variant (a key of ``VARIANTS``).

    Args:
        root: cache folder of the generated splits (created if missing), e.g. ``${paths.cache_dir}/synthetic``.
        split: 'train', 'val' or 'test'; each draws from its own seeds, so val is held out from train.
        key: the source's key in the mixture (the ``ds`` tag of its samples).
        num_samples: number of images in the split.
        seed: base seed; same seed and options = identical images and annotations.
        image_size_range: inclusive (min, max) pixels for the width and the height (drawn independently);
            None keeps the variant's default.
        people_range: inclusive (min, max) people per image; None keeps the variant's default.
        person_height_range: (min, max) projected body height as a fraction of the image height; None keeps the
            variant's default.
        outside_prob: share of people placed across an image border (partly outside); None keeps the
            variant's default.
        min_center_distance: two people's torso centres are at least this times the smaller one's height apart;
            None keeps the variant's default.
        pose_space: 'prototypes' or 'uniform' (see ``generator.SceneConfig``); None keeps the variant's default.
        pose_noise_deg: Gaussian noise (degrees) on every joint angle around the prototypes; None keeps the
            variant's default.
        pose_blend_prob: share of poses blended with a second prototype; None keeps the variant's default.
        background: 'procedural' or 'plain' (see ``generator.SceneConfig``); None keeps the variant's default.
        yaw_range_deg: people turn by up to this much away from the camera; None keeps the variant's default.
        back_facing_prob: share of people seen from behind; None keeps the variant's default.
        body_model_dir: folder of the body model that poses the meshes; the stand-in model is written there
            if missing. Default: ``<root>/standin_smpl``.
        body_model_kind: 'standin' (default) or 'smpl' (needs the licensed files in body_model_dir).
        num_workers: processes used to generate a split the first time (0 or 1: this process only).
    """

    variant: ClassVar[str]
    default_key: ClassVar[str]
    is_3d: ClassVar[bool] = True
    provides: ClassVar[str] = (
        "54-joint 2D (exact projection, vis=1 inside the image), root-centred 3D joints, SMPL pose + shape "
        "in camera axes, root translation, intrinsics; track ids; every person in the image labelled"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        key: str | None = None,
        num_samples: int = 2000,
        seed: int = 0,
        image_size_range: Sequence[int] | None = None,
        people_range: Sequence[int] | None = None,
        person_height_range: Sequence[float] | None = None,
        outside_prob: float | None = None,
        min_center_distance: float | None = None,
        pose_space: str | None = None,
        pose_noise_deg: float | None = None,
        pose_blend_prob: float | None = None,
        background: str | None = None,
        yaw_range_deg: float | None = None,
        back_facing_prob: float | None = None,
        body_model_dir: str | Path | None = None,
        body_model_kind: str = "standin",
        num_workers: int = 2,
    ):
        root = Path(root).expanduser()
        root.mkdir(parents=True, exist_ok=True)  # a cache folder: created, not required to exist
        super().__init__(root, split, key=key or self.default_key)
        requested = {"image_size_range": image_size_range, "people_range": people_range,
                     "person_height_range": person_height_range, "outside_prob": outside_prob,
                     "min_center_distance": min_center_distance, "pose_space": pose_space,
                     "pose_noise_deg": pose_noise_deg, "pose_blend_prob": pose_blend_prob,
                     "background": background, "yaw_range_deg": yaw_range_deg,
                     "back_facing_prob": back_facing_prob}
        self.scene_config: SceneConfig = self.build_scene(**requested)
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.folder = ensure_synthetic_split(
            self.root,
            self.variant,
            split,
            self.seed,
            self.num_samples,
            self.scene_config,
            body_model_kind=body_model_kind,
            body_model_dir=Path(body_model_dir) if body_model_dir is not None else self.root / "standin_smpl",
            num_workers=num_workers,
        )
        self.store = PackedStore(self.folder / ANNOTATION_FILE)

    @classmethod
    def build_scene(cls, **options: Any) -> SceneConfig:
        """The variant's scene with `options` (``SCENE_OPTIONS`` names; None: the variant's own), validated;
        no file is touched (the preflight checks a config with it before any image is generated)."""
        unknown = sorted(set(options) - set(SCENE_OPTIONS))
        if unknown:
            raise TypeError(f"{cls.__name__}: unknown scene options {unknown}; known: {', '.join(SCENE_OPTIONS)}")
        overrides = {name: SCENE_OPTIONS[name](name, value) for name, value in options.items() if value is not None}
        return dataclasses.replace(VARIANTS[cls.variant], **overrides)

    def __len__(self) -> int:
        return len(self.store)

    def get_image_info(self, index: int) -> dict[str, Any]:
        """The img_info dict of image ``index`` (romp_datasets.md §3); ``verts`` are left out (rebuild them
        from ``params``), ``root_trans`` and ``camMats`` are included."""
        info = self.store.image_record(index)
        path = self.folder / info["imgpath"]
        info["imgpath"] = str(path)
        info["image"] = load_image(path)
        info["ds"] = self.key
        return info


class SyntheticSolo(SyntheticSource):
    """Synthetic images of one large, roughly centred person (occasionally cut by the border)."""

    variant = "solo"
    default_key = "synth_solo"
    multi_person = False


class SyntheticCrowd(SyntheticSource):
    """Synthetic images of 3-8 smaller people who overlap, occlude each other and leave the frame."""

    variant = "crowd"
    default_key = "synth_crowd"
    multi_person = True


def _pair(cast: type):
    def convert(name: str, value: Sequence[Any]) -> tuple[Any, Any]:
        values = tuple(cast(v) for v in value)
        if len(values) != 2 or values[0] > values[1]:
            raise ValueError(f"{name} must be [min, max] with min <= max, got {list(value)}")
        return values
    return convert


def _scalar(cast: type):
    return lambda _name, value: cast(value)


# Scene options a source may set (None: the variant's own); each value is converted to SceneConfig's type,
# which validates it.
SCENE_OPTIONS = {"image_size_range": _pair(int), "people_range": _pair(int), "person_height_range": _pair(float),
                  "outside_prob": _scalar(float), "min_center_distance": _scalar(float),                   "pose_space": _scalar(str), "pose_noise_deg": _scalar(float), "pose_blend_prob": _scalar(float),
                  "background": _scalar(str),
                  "yaw_range_deg": _scalar(float), "back_facing_prob": _scalar(float)}
