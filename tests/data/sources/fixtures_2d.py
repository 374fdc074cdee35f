"""Tiny fixtures of the 2D image datasets, written in each dataset's real on-disk format.

Every fixture person stands facing the camera. Facing the camera, a person's LEFT side is on the viewer's RIGHT, so
left joints have the larger x. The images show the people too (left limbs yellow, right limbs purple), so that the
check CLI's pictures reveal a mirrored mapping: its left-side bones (blue) must lie on the yellow limbs.

The joint orders below are written out from each dataset's own documentation, independently of
romp_hydra.body.joint_sets, so a wrong order there makes the tests fail instead of agreeing with itself.
"""
from __future__ import annotations

import json
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.io import savemat

# Body landmarks in units of body height: origin at the head top, x to the viewer's right, y down.
BODY: dict[str, tuple[float, float]] = {
    "head_top": (0.0, 0.0), "nose": (0.0, 0.08), "left_eye": (0.03, 0.06), "right_eye": (-0.03, 0.06),
    "left_ear": (0.06, 0.07), "right_ear": (-0.06, 0.07), "upper_neck": (0.0, 0.13), "neck": (0.0, 0.18),
    "thorax": (0.0, 0.19), "left_shoulder": (0.14, 0.2), "right_shoulder": (-0.14, 0.2),
    "left_elbow": (0.2, 0.36), "right_elbow": (-0.2, 0.36), "left_wrist": (0.22, 0.5),
    "right_wrist": (-0.22, 0.5), "pelvis": (0.0, 0.52), "left_hip": (0.09, 0.52), "right_hip": (-0.09, 0.52),
    "left_knee": (0.1, 0.73), "right_knee": (-0.1, 0.73), "left_ankle": (0.1, 0.95), "right_ankle": (-0.1, 0.95),
}  # fmt: skip

# Official joint orders (cocodataset.org; CrowdPose README; HRNet's MPII json; hr-lspet README; AI Challenger;
# PoseTrack 2018, whose 'head_bottom' is MPII's upper neck).
COCO_ORDER = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
              "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
              "right_knee", "left_ankle", "right_ankle")
CROWDPOSE_ORDER = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                   "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head_top", "neck")
MPII_ORDER = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
              "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
              "left_wrist")
LSP_ORDER = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
             "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck", "head_top")
AICH_ORDER = ("right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
              "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "head_top", "neck")
POSETRACK_ORDER = ("nose", "upper_neck", "head_top", "left_ear", "right_ear") + COCO_ORDER[5:]

_LIMBS = [("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("left_hip", "left_knee"),
          ("left_knee", "left_ankle"), ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
          ("right_hip", "right_knee"), ("right_knee", "right_ankle"), ("left_shoulder", "right_shoulder"),
          ("left_hip", "right_hip"), ("neck", "pelvis")]
_LEFT_BGR, _RIGHT_BGR, _CENTRE_BGR = (0, 230, 255), (200, 0, 160), (220, 220, 220)


@dataclass
class Person:
    """A fixture person: pixel landmarks by name (x, y)."""

    joints: dict[str, tuple[float, float]]

    def raw(self, order: Sequence[str], offset: float = 0.0) -> np.ndarray:
        """(K, 2) landmarks in a dataset's order (+ offset, e.g. 1 for MATLAB's 1-based pixels)."""
        return np.array([self.joints[name] for name in order], np.float64) + offset

    def __getitem__(self, name: str) -> np.ndarray:
        return np.array(self.joints[name], np.float32)


def standing_person(centre_x: float, top_y: float, height: float) -> Person:
    """A person facing the camera, head top at (centre_x, top_y), `height` pixels tall (coordinates rounded to 0.5)."""
    return Person({name: (round(2 * (centre_x + x * height)) / 2, round(2 * (top_y + y * height)) / 2)
                   for name, (x, y) in BODY.items()})


def draw_people(width: int, height: int, people: Sequence[Person], seed: int = 0) -> np.ndarray:
    """A BGR image of the people on a textured dark background (left limbs yellow, right limbs purple)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(30, 70, size=(height, width, 3), dtype=np.uint8)
    for person in people:
        for a, b in _LIMBS:
            colour = _LEFT_BGR if a.startswith("left") and b.startswith("left") else (
                _RIGHT_BGR if a.startswith("right") and b.startswith("right") else _CENTRE_BGR)
            cv2.line(image, _pt(person[a]), _pt(person[b]), colour, 5, cv2.LINE_AA)
        head = person["nose"]
        cv2.circle(image, _pt(head), max(3, int(abs(person["neck"][1] - person["head_top"][1]) / 2)), _CENTRE_BGR, 2)
        cv2.putText(image, "L", _pt(person["left_wrist"] + np.array([4, 0])), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    _LEFT_BGR, 1)
    return image


def _pt(xy: np.ndarray) -> tuple[int, int]:
    return round(float(xy[0])), round(float(xy[1]))


def write_image(path: Path, width: int, height: int, people: Sequence[Person], seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), draw_people(width, height, people, seed)), path
    return path


def with_flags(person: Person, order: Sequence[str], flags: Mapping[str, float] | None = None,
               default: float = 2.0, offset: float = 0.0) -> np.ndarray:
    """(K, 3) [x, y, v] in `order`; `flags` overrides v per landmark name; v = 0 joints get x = y = 0 (COCO)."""
    xy = person.raw(order, offset)
    v = np.array([float((flags or {}).get(name, default)) for name in order])
    xy[v == 0] = 0.0
    return np.concatenate([xy, v[:, None]], axis=1)


def keypoint_box_centre(joints: np.ndarray) -> np.ndarray:
    """Centre of the box around the labelled (v > 0) joints of a (K, 3) array: how EFT centres its fits."""
    labelled = joints[joints[:, 2] > 0, :2]
    return (labelled.min(axis=0) + labelled.max(axis=0)) / 2


# -- EFT ------------------------------------------------------------------------------------------------------------

def eft_pose(seed: int) -> np.ndarray:
    """(24, 3) axis-angle of a plausible pose: a distinct global orientation and small joint rotations."""
    rng = np.random.default_rng(seed)
    pose = rng.uniform(-0.4, 0.4, size=(24, 3))
    pose[0] = (0.2 + 0.1 * seed, -0.3, 0.1)
    return pose


def eft_json_entry(image_name: str, centre: np.ndarray, pose: np.ndarray, betas: np.ndarray) -> dict[str, Any]:
    """One entry of EFT's release json; rotations converted with OpenCV (independent of romp_hydra)."""
    rotmats = [cv2.Rodrigues(np.asarray(aa, np.float64).reshape(3, 1))[0].tolist() for aa in pose]
    return {"imageName": image_name, "bbox_center": [float(c) for c in centre], "bbox_scale": 1.0,
            "parm_cam": [1.0, 0.0, 0.0], "parm_shape": [float(b) for b in betas], "parm_pose": rotmats}


def expected_params(pose: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """The (76,) params a fit should become: axis-angle of SMPL joints 0..21, then the betas."""
    return np.concatenate([pose[:22].reshape(-1), betas]).astype(np.float32)


def save_romp_npz(path: Path, **members: Any) -> Path:
    """An archive like ROMP's annots*.npz: each member a pickled Python object in a 0-d object array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, value in members.items():
        holder = np.empty((), dtype=object)
        holder[()] = value
        arrays[name] = holder
    np.savez(path, **arrays)
    return path


# -- COCO / CrowdPose ---------------------------------------------------------------------------------------------

@dataclass
class Fixture:
    """What a writer produced: the dataset folder and the facts a test asserts."""

    root: Path
    images: list[str] = field(default_factory=list)  # image paths relative to root, in the expected store order
    people: dict[str, list[Person]] = field(default_factory=dict)  # image path -> its kept persons, in order
    params: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)  # (image, person) -> expected params
    extra: dict[str, Any] = field(default_factory=dict)


def write_coco_fixture(data_dir: Path, *, split: str = "train2014", eft: str | None = "json",
                       romp_archives: bool = False) -> Fixture:
    """coco/: three images in COCO 2014 layout.

    Image 1 (320 x 240): persons A and B, plus an annotation without keypoints and a crowd annotation (both
    dropped). A's left ear is unlabelled (v=0) and its right knee occluded (v=1). Image 2: one person D. Image 3: one
    person only 95 px tall, so ROMP's 128 px filter drops the image. EFT fits: A (centre 3 px off), D, and a stray fit
    far from everyone in image 1, which must not be given to B.

    Args:
        eft: 'json' (EFT's COCO2014-All-ver01.json), 'npz' (ROMP's eft_annots.npz) or None.
        romp_archives: write ROMP's annots_<split>.npz instead of the official json.
    """
    root = data_dir / "coco"
    names = [f"COCO_{split}_{i:012d}.jpg" for i in (1, 2, 3)]
    a, b = standing_person(90, 20, 200), standing_person(225, 25, 190)
    d, small = standing_person(160, 15, 210), standing_person(150, 60, 100)
    flags_a = {"left_ear": 0, "right_knee": 1}
    persons = {names[0]: [with_flags(a, COCO_ORDER, flags_a), with_flags(b, COCO_ORDER)],
               names[1]: [with_flags(d, COCO_ORDER)], names[2]: [with_flags(small, COCO_ORDER)]}
    sizes = {names[0]: (320, 240), names[1]: (320, 240), names[2]: (300, 200)}
    for name, people in ((names[0], [a, b]), (names[1], [d]), (names[2], [small])):
        write_image(root / "images" / split / name, *sizes[name], people, seed=len(name))

    if romp_archives:
        save_romp_npz(root / f"annots_{split}.npz", annot={n: np.stack(p) for n, p in persons.items()})
    else:
        annotations = []
        for image_id, name in enumerate(names, start=1):
            for joints in persons[name]:
                annotations.append({"id": len(annotations) + 100, "image_id": image_id, "category_id": 1,
                                    "iscrowd": 0, "keypoints": joints.reshape(-1).tolist(),
                                    "num_keypoints": int((joints[:, 2] > 0).sum()), "bbox": [0, 0, 1, 1]})
        annotations.append({"id": 900, "image_id": 1, "category_id": 1, "iscrowd": 0, "keypoints": [0] * 51,
                            "num_keypoints": 0, "bbox": [10, 10, 20, 40]})
        annotations.append({"id": 901, "image_id": 1, "category_id": 1, "iscrowd": 1, "keypoints": [0] * 51,
                            "num_keypoints": 0, "bbox": [0, 0, 50, 50], "segmentation": {"counts": [], "size": [240, 320]}})
        content = {"images": [{"id": i, "file_name": n, "width": sizes[n][0], "height": sizes[n][1]}
                              for i, n in enumerate(names, start=1)],
                   "annotations": annotations,
                   "categories": [{"id": 1, "name": "person", "keypoints": list(COCO_ORDER), "skeleton": []}]}
        _write_json(root / "annotations" / f"person_keypoints_{split}.json", content)

    fixture = Fixture(root, images=[f"images/{split}/{names[0]}", f"images/{split}/{names[1]}"],
                      people={f"images/{split}/{names[0]}": [a, b], f"images/{split}/{names[1]}": [d]})
    if eft is not None:
        fits = [(names[0], keypoint_box_centre(persons[names[0]][0]) + [3, -2], eft_pose(1), np.linspace(-1, 1, 10)),
                (names[1], keypoint_box_centre(persons[names[1]][0]), eft_pose(2), np.linspace(0, 0.5, 10)),
                (names[0], np.array([300.0, 10.0]), eft_pose(3), np.zeros(10))]
        fixture.params[(fixture.images[0], 0)] = expected_params(fits[0][2], fits[0][3])
        fixture.params[(fixture.images[1], 0)] = expected_params(fits[1][2], fits[1][3])
        fixture.extra["stray_params"] = expected_params(fits[2][2], fits[2][3])
        _write_eft(root, "COCO2014-All-ver01.json", fits, eft, image_prefix=f"{split}/")
    return fixture


def _write_eft(root: Path, json_name: str, fits: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
               form: str, image_prefix: str = "") -> None:
    if form == "json":
        _write_json(root / "eft_fit" / json_name,
                    {"ver": 0.1, "data": [eft_json_entry(image_prefix + n, c, p, b) for n, c, p, b in fits]})
    elif form == "npz":
        annots: dict[str, list] = {}
        for name, centre, pose, betas in fits:
            annots.setdefault(name, []).append([np.asarray(centre), pose.reshape(72), np.asarray(betas)])
        save_romp_npz(root / "eft_annots.npz", annots=annots)
    else:
        raise ValueError(f"eft form {form!r}: use 'json' or 'npz'")


def write_crowdpose_fixture(data_dir: Path, split: str = "train") -> Fixture:
    """crowdpose/: image 1 with three overlapping people (head top occluded / left ankle unlabelled), image 2 with one
    60 px tall person (kept: CrowdPose's limit is 40 px), image 3 with a 35 px person (dropped by the filter)."""
    root = data_dir / "crowdpose"
    people = {"100000.jpg": [standing_person(80, 20, 190), standing_person(150, 30, 180), standing_person(230, 25, 185)],
              "100001.jpg": [standing_person(120, 40, 62)], "100002.jpg": [standing_person(100, 50, 36)]}
    flags = {"100000.jpg": [{}, {"head_top": 1}, {"left_ankle": 0}], "100001.jpg": [{}], "100002.jpg": [{}]}
    # v: 2 visible (the default here), 1 occluded, 0 unlabelled
    annotations, images = [], []
    for image_id, (name, persons) in enumerate(people.items(), start=1):
        write_image(root / "images" / name, 320, 240, persons, seed=image_id)
        images.append({"id": image_id, "file_name": name, "width": 320, "height": 240, "crowdIndex": 0.4})
        for person, flag in zip(persons, flags[name]):
            joints = with_flags(person, CROWDPOSE_ORDER, flag)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                                "keypoints": joints.reshape(-1).tolist(), "num_keypoints": int((joints[:, 2] > 0).sum()),
                                "bbox": [0, 0, 1, 1]})
    _write_json(root / "json" / f"crowdpose_{split}.json",
                {"images": images, "annotations": annotations,
                 "categories": [{"id": 1, "name": "person", "keypoints": list(CROWDPOSE_ORDER)}]})
    kept = ["100000.jpg", "100001.jpg"]
    return Fixture(root, images=[f"images/{n}" for n in kept], people={f"images/{n}": people[n] for n in kept},
                   extra={"all_images": [f"images/{n}" for n in people]})


def write_crowdhuman_fixture(data_dir: Path, split: str = "train") -> Fixture:
    """crowdhuman/: image A with two persons and a 'mask' box, image B with one person and one ignored box.

    Boxes are (4, 2) [full lt, full rb, visible lt, visible rb]; the full box of A's first person leaves the image.
    """
    root = data_dir / "crowdhuman"
    lines, boxes = [], {}
    entries = {
        "273271,c9db000d5146c15": [("person", [-10, 20, 100, 200], [5, 25, 80, 150], 0),
                                   ("person", [150, 30, 90, 190], [150, 30, 90, 120], 0),
                                   ("mask", [250, 0, 60, 60], [250, 0, 60, 60], 1)],
        "273271,c9db000d5146c16": [("person", [60, 10, 110, 220], [60, 10, 110, 200], 0),
                                   ("person", [200, 50, 50, 100], [200, 50, 40, 90], 1)],
    }
    for image_id, items in entries.items():
        gtboxes = [{"tag": tag, "fbox": full, "vbox": visible, "hbox": [full[0] + 10, full[1], 30, 30],
                    "extra": {"box_id": k, "occ": 0, **({"ignore": 1} if ignore else {})},
                    "head_attr": {"ignore": 0, "occ": 0, "unsure": 0}}
                   for k, (tag, full, visible, ignore) in enumerate(items)]
        lines.append(json.dumps({"ID": image_id, "gtboxes": gtboxes}))
        people = [standing_person(v[0] + v[2] / 2, v[1], v[3]) for tag, _, v, ign in items if tag == "person"]
        write_image(root / "images" / split / f"{image_id}.jpg", 320, 240, people, seed=len(lines))
        boxes[f"images/{split}/{image_id}.jpg"] = [
            np.array([[f[0], f[1]], [f[0] + f[2], f[1] + f[3]], [v[0], v[1]], [v[0] + v[2], v[1] + v[3]]], np.float32)
            for tag, f, v, ignore in items if tag == "person" and not ignore]
    (root / f"annotation_{split}.odgt").write_text("\n".join(lines) + "\n")
    return Fixture(root, images=list(boxes), extra={"boxes": boxes})


# -- MPII / LSP ---------------------------------------------------------------------------------------------------

def write_mpii_fixture(data_dir: Path, split: str = "train", eft: str | None = "json") -> Fixture:
    """mpii/: HRNet-style annot/<split>.json (1-based pixels). Image 1: persons A (fit) and B (no fit; its head top
    unlabelled); image 2: person C (fit); image 3: person E without any fit (left out while eft_images_only)."""
    root = data_dir / "mpii"
    a, b = standing_person(85, 20, 195), standing_person(230, 30, 185)
    c, e = standing_person(160, 20, 200), standing_person(150, 20, 200)
    layout = [("000000001.jpg", [(a, {}), (b, {"head_top": 0})]), ("000000002.jpg", [(c, {})]),
              ("000000003.jpg", [(e, {})])]
    entries = []
    for index, (name, persons) in enumerate(layout):
        write_image(root / "images" / name, 320, 240, [p for p, _ in persons], seed=index)
        for person, flags in persons:
            joints = with_flags(person, MPII_ORDER, flags, default=1, offset=1.0)  # MATLAB's 1-based pixels
            entries.append({"joints_vis": joints[:, 2].astype(int).tolist(), "joints": joints[:, :2].tolist(),
                            "image": name, "scale": 1.0, "center": (person["pelvis"] + 1).tolist()})
    _write_json(root / "annot" / f"{split}.json", entries)
    fixture = Fixture(root, images=["images/000000001.jpg", "images/000000002.jpg"],
                      people={"images/000000001.jpg": [a, b], "images/000000002.jpg": [c]},
                      extra={"unfitted": "images/000000003.jpg"})
    if eft is not None:
        centre_a = keypoint_box_centre(with_flags(a, MPII_ORDER))
        centre_c = keypoint_box_centre(with_flags(c, MPII_ORDER))
        fits = [("000000001.jpg", centre_a, eft_pose(4), np.full(10, 0.3)),
                ("000000002.jpg", centre_c + [-2, 2], eft_pose(5), np.full(10, -0.3))]
        fixture.params[("images/000000001.jpg", 0)] = expected_params(fits[0][2], fits[0][3])
        fixture.params[("images/000000002.jpg", 0)] = expected_params(fits[1][2], fits[1][3])
        _write_eft(root, "MPII_ver01.json", fits, eft, image_prefix="images/")
    return fixture


def write_lsp_fixture(data_dir: Path, eft: str | None = "json") -> Fixture:
    """lsp/hr-lspet/: im00001..im00003.png with joints.mat (14, 3, 3); EFT fits for images 1 and 2 only.

    Image 1's right elbow has visibility 0 (left out at ROMP's 0.03 threshold)."""
    root = data_dir / "lsp" / "hr-lspet"
    people = [standing_person(100, 15, 200), standing_person(120, 20, 190), standing_person(90, 10, 210)]
    joints = np.zeros((14, 3, 3))
    for k, person in enumerate(people):
        write_image(root / f"im{k + 1:05d}.png", 200 + 20 * k, 230, [person], seed=k)
        raw = with_flags(person, LSP_ORDER, {"right_elbow": 0} if k == 0 else {}, default=1)
        raw[:, :2] = person.raw(LSP_ORDER)  # hr-lspet keeps coordinates of invisible joints
        joints[:, :, k] = raw
    root.mkdir(parents=True, exist_ok=True)
    savemat(str(root / "joints.mat"), {"joints": joints})
    fixture = Fixture(root, images=["im00001.png", "im00002.png"],
                      people={"im00001.png": [people[0]], "im00002.png": [people[1]]})
    if eft is not None:
        fits = [(f"im{k + 1:05d}.png", keypoint_box_centre(joints[:, :, k]), eft_pose(6 + k), np.full(10, 0.1 * k))
                for k in (0, 1)]
        for k, (name, _, pose, betas) in enumerate(fits):
            fixture.params[(name, 0)] = expected_params(pose, betas)
        _write_eft(root, "LSPet_ver01.json", fits, eft, image_prefix="hr-lspet/")
    return fixture


# -- AI Challenger / PoseTrack ------------------------------------------------------------------------------------

def write_aich_fixture(data_dir: Path) -> Fixture:
    """ai_challenger/: train set with images 1 and 2 (two people; a third person with only two labelled joints is
    dropped) and image 3 (one person, its left knee occluded: v=2), in the release's folder names."""
    root = data_dir / "ai_challenger"
    set_dir = root / "ai_challenger_keypoint_train_20170909"
    image_dir = set_dir / "keypoint_train_images_20170902"
    a, b = standing_person(90, 20, 195), standing_person(220, 25, 190)
    ghost, c = standing_person(300, 100, 80), standing_person(150, 15, 205)
    ghost_flags = {name: 3 for name in AICH_ORDER} | {"head_top": 1, "neck": 1}
    layout = [("0a1b2c", [(a, {}), (b, {"right_wrist": 3}), (ghost, ghost_flags)]), ("0d4e5f", [(c, {"left_knee": 2})])]
    entries = []
    for index, (image_id, persons) in enumerate(layout):
        write_image(image_dir / f"{image_id}.jpg", 320, 240, [p for p, _ in persons], seed=index)
        keypoints = {}
        for k, (person, flags) in enumerate(persons, start=1):
            joints = with_flags(person, AICH_ORDER, flags, default=1)
            joints[joints[:, 2] == 3, :2] = 0.0
            keypoints[f"human{k}"] = joints.reshape(-1).tolist()
        entries.append({"image_id": image_id, "keypoint_annotations": keypoints,
                        "human_annotations": {h: [0, 0, 10, 10] for h in keypoints}})
    _write_json(set_dir / "keypoint_train_annotations_20170909.json", entries)
    folder = "ai_challenger_keypoint_train_20170909/keypoint_train_images_20170902"
    return Fixture(root, images=[f"{folder}/0a1b2c.jpg", f"{folder}/0d4e5f.jpg"],
                   people={f"{folder}/0a1b2c.jpg": [a, b], f"{folder}/0d4e5f.jpg": [c]})


def write_posetrack_fixture(data_dir: Path, split: str = "train") -> Fixture:
    """posetrack2018/: video 000001_bonn_train with frames 0..3 (frames 0, 1, 3 labelled; tracks 7 and 9 walk right)
    and video 000002_mpii_train with one labelled frame (track 7 again: a different person, so another global id).
    The ears are unannotated (v=0), as in PoseTrack."""
    root = data_dir / "posetrack2018"
    ear_flags = {"left_ear": 0, "right_ear": 0}
    videos = {"000001_bonn_train": [(0, True), (1, True), (2, False), (3, True)], "000002_mpii_train": [(0, True)]}
    frames = []
    for v_index, (video, frame_list) in enumerate(videos.items()):
        images, annotations = [], []
        for frame, labelled in frame_list:
            image_id = 10000 * (v_index + 1) + frame
            file_name = f"images/{split}/{video}/{frame:06d}.jpg"
            people = [standing_person(80 + 10 * frame, 20, 190), standing_person(220 + 5 * frame, 30, 180)]
            people = people if v_index == 0 else people[:1]
            write_image(root / file_name, 320, 240, people, seed=frame)
            images.append({"id": image_id, "file_name": file_name, "is_labeled": labelled, "nframes": len(frame_list),
                           "frame_id": image_id, "vid_id": video[:6], "has_no_densepose": True})
            if not labelled:
                continue
            for person, track in zip(people, (7, 9)):
                joints = with_flags(person, POSETRACK_ORDER, ear_flags, default=1)
                annotations.append({"id": len(annotations), "image_id": image_id, "track_id": track,
                                    "category_id": 1, "keypoints": joints.reshape(-1).tolist(), "bbox": [0, 0, 1, 1],
                                    "bbox_head": [0, 0, 1, 1]})
            frames.append((file_name, people))
        _write_json(root / "annotations" / split / f"{video}.json",
                    {"images": images, "annotations": annotations,
                     "categories": [{"id": 1, "name": "person", "keypoints": list(POSETRACK_ORDER)}]})
    return Fixture(root, images=[f for f, _ in frames], people=dict(frames))


# -- UP-3D --------------------------------------------------------------------------------------------------------

def write_up_fixture(data_dir: Path) -> Fixture:
    """UP/up-3d/: samples 00000 (high, lsp), 00001 (high, fashionpose), 00002 (medium, mpii), 00003 (high, mpii);
    train.txt lists all four. Only 00000 and 00003 pass ROMP's filter."""
    root = data_dir / "UP" / "up-3d"
    root.mkdir(parents=True, exist_ok=True)
    infos = [("high", "lsp 1234"), ("high", "fashionpose 17"), ("medium", "mpii 77"), ("high", "mpii 8")]
    fixture = Fixture(root)
    for k, (quality, origin) in enumerate(infos):
        idx = f"{k:05d}"
        person = standing_person(100, 15, 200)
        write_image(root / f"{idx}_image.png", 200, 230, [person], seed=k)
        joints = with_flags(person, LSP_ORDER, {"head_top": 0} if k == 3 else {}, default=1)
        np.save(root / f"{idx}_joints.npy", joints.T)
        pose, betas = eft_pose(10 + k).reshape(72), np.linspace(-0.5, 0.5, 10) * k
        with open(root / f"{idx}_body.pkl", "wb") as file:
            pickle.dump({"pose": pose, "betas": betas, "t": np.zeros(3), "f": 5000.0}, file, protocol=2)
        (root / f"{idx}_quality_info.txt").write_text(f"{quality}\n")
        (root / f"{idx}_dataset_info.txt").write_text(f"{origin}\n")
        if quality == "high" and not origin.startswith("fashionpose"):
            fixture.images.append(f"{idx}_image.png")
            fixture.people[f"{idx}_image.png"] = [person]
            fixture.params[(f"{idx}_image.png", 0)] = np.concatenate([pose[:66], betas]).astype(np.float32)
    (root / "train.txt").write_text("".join(f"/{k:05d}_image.png\n" for k in range(len(infos))))
    return fixture


def write_internet_fixture(data_dir: Path) -> Fixture:
    """internet/: a jpg, a png and a text file that is not an image."""
    root = data_dir / "internet"
    write_image(root / "a_street.jpg", 320, 240, [standing_person(100, 20, 190)])
    write_image(root / "b_party.png", 200, 260, [standing_person(100, 30, 200)])
    (root / "notes.txt").write_text("not an image\n")
    return Fixture(root, images=["a_street.jpg", "b_party.png"])


def _write_json(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


# -- pipeline check -----------------------------------------------------------------------------------------------

def pipeline_batch(source: Any, count: int | None = None, input_size: int = 128, seed: int = 0) -> dict[str, Any]:
    """A collated training batch of the source's first `count` items through the real pipeline (augmenting)."""
    from romp_hydra.data.collate import collate_samples
    from romp_hydra.data.pipeline import SamplePipeline
    from romp_hydra.data.sample import validate_img_info

    pipeline = SamplePipeline({"input_size": input_size, "centermap_size": input_size // 8, "max_person": 16},
                              train=True)
    samples = []
    for index in range(len(source) if count is None else count):
        info = validate_img_info(source.get_image_info(index), source.key, index)
        samples.append(pipeline(info, np.random.default_rng([seed, index]), source.scale_range, source.is_3d,
                                index=index))
    return collate_samples(samples)


def assert_valid_batch(batch: Mapping[str, Any], size: int, input_size: int = 128, max_person: int = 16) -> None:
    """Shapes, dtypes and fill conventions of a training batch (docs/architecture.md)."""
    import torch

    assert batch["image"].shape == (size, 3, input_size, input_size) and batch["image"].dtype == torch.uint8
    assert batch["kp2d"].shape == (size, max_person, 54, 2)
    assert batch["params"].shape == (size, max_person, 76)
    assert batch["valid_masks"].shape == (size, max_person, 8) and batch["valid_masks"].dtype == torch.bool
    assert batch["centermap"].shape == (size, 1, input_size // 8, input_size // 8)
    assert torch.isfinite(batch["kp2d"]).all() and torch.isfinite(batch["params"]).all()
    kp2d = batch["kp2d"]
    present = kp2d > -1.99
    assert ((kp2d[present] > -1) & (kp2d[present] < 1)).all(), "a present 2D joint outside (-1, 1)"
    empty = ~batch["person_mask"]
    assert (batch["centers"][empty] == -2).all() and not batch["valid_masks"][empty].any()
