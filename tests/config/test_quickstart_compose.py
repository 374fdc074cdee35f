"""The quickstart's scene settings reach its held-out images through val=synthetic, and val=none still composes."""
from __future__ import annotations

SCENE_KEYS = ("people_range", "person_height_range", "outside_prob", "min_center_distance", "background",
              "yaw_range_deg", "back_facing_prob", "pose_space", "pose_noise_deg", "pose_blend_prob")


def test_held_out_images_are_drawn_like_the_training_ones(compose_cfg):
    cfg = compose_cfg(["experiment=quickstart", "dataset.members.synth_crowd.people_range=[3,5]"])
    for member in ("synth_solo", "synth_crowd"):
        train, val = cfg.dataset.members[member], cfg.val.dataset.members[member]
        assert {k: val[k] for k in SCENE_KEYS} == {k: train[k] for k in SCENE_KEYS}
        assert (train.split, val.split) == ("train", "val")
    assert list(cfg.val.dataset.members.synth_crowd.people_range) == [3, 5]
    assert cfg.val.dataset.members.synth_crowd.background == "plain"


def test_val_none_and_a_training_mixture_without_a_member_compose(compose_cfg):
    assert compose_cfg(["experiment=quickstart", "val=none"]).val is None
    solo_only = compose_cfg(["experiment=quickstart", "~dataset.members.synth_crowd", "~sampling.weights.synth_crowd",
                             "sampling.weights.synth_solo=1"])
    # No training member of that name: the held-out crowd keeps the variant's own settings (null).
    assert solo_only.val.dataset.members.synth_crowd.background is None
