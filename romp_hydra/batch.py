"""The training batch's schema: key names, fill values and the columns of ``valid_masks``.

The data layer builds samples with these keys, the losses and the evaluation read them, so the layout lives
here, below all of them (this module imports nothing). Shapes and dtypes: docs/architecture.md, "Training batch";
MP = max_person, J = 54.
"""

from __future__ import annotations

# ---- key names -----------------------------------------------------------------------------------------------
# What the loss needs on the device (the train step moves these, and only these, off the host).
TARGET_KEYS: tuple[str, ...] = (
    "kp2d", "kp3d", "params", "valid_masks", "centers", "person_mask", "centermap", "all_persons_labelled",
)
# Per-slot targets gathered for the matched persons (N = number of matches) before the per-person loss terms.
MATCHED_TARGET_KEYS: tuple[str, ...] = ("kp2d", "kp3d", "params", "valid_masks")
# Every key of one sample (SamplePipeline) and of the collated batch; the loader adds "skipped" in training.
SAMPLE_KEYS: tuple[str, ...] = (
    "image", "kp2d", "kp3d", "params", "centers", "person_mask", "valid_masks", "track_ids", "centermap",
    "all_persons_labelled", "offsets", "affine", "rot_flip", "dataset", "imgpath", "index",
)

# ---- sizes and fill values -----------------------------------------------------------------------------------
NUM_JOINTS = 54
NUM_PARAMS = 76  # SMPL axis-angle 66 (global orient 3 + body pose 63) + betas 10
NUM_POSE_PARAMS = 66
KP_MISSING = -2.0  # kp2d / kp3d / centers of a missing joint or an empty slot
PARAMS_MISSING = -10.0
TRACK_ID_MISSING = -1

# ---- valid_masks (MP, 8) bool: what the losses may use per slot ----------------------------------------------
KP2D = 0  # slot holds a 54-joint 2D pose (False for box-only persons)
KP3D = 1  # root-centred 3D joints are valid
TRACK_ID = 2  # track_ids[slot] is a real identity
GLOBAL_ORIENT = 3  # params[slot, :3]
BODY_POSE = 4  # params[slot, 3:66]
BETAS = 5  # params[slot, 66:76]
VERTS = 6  # the source has ground-truth SMPL vertices (not carried in the batch; rebuild them from params)
DEPTH = 7  # the source has a camera-frame root translation (not carried in the batch)
NUM_VALID_MASKS = 8

VALID_MASK_NAMES: tuple[str, ...] = (
    "kp2d", "kp3d", "track_id", "global_orient", "body_pose", "betas", "verts", "depth",
)
