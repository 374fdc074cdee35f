"""ROMP's network and what turns its maps into people.

`model` is the model path every caller uses: `build_model(cfg, device)` -> network + predictor + people picker,
`forward_step` -> one output dict (maps and people), `evaluate_people` for evaluation protocols. Inside it:
`build(cfg)` -> `ROMPNet`; `parser.parse` / `parser.match_to_gt` choose cells (one matcher, modes
`nearest_center` | `gt_center`), `parser.sample_params` reads the 145 parameters there, `Predictor` turns them
into meshes, joints and 2D projections. `checkpoint` loads ROMP / HigherHRNet / torchvision weights.
"""

from romp_hydra.models.backbones import HRNet, ResNet
from romp_hydra.models.build import build, build_backbone
from romp_hydra.models.checkpoint import (
    CheckpointError,
    LoadReport,
    load_backbone_weights,
    load_network_weights,
    save_network,
)
from romp_hydra.models.model import Model, PeoplePicker, build_model, forward_step
from romp_hydra.models.parser import MATCH_MODES, Selection, match_to_gt, parse, sample_params
from romp_hydra.models.predictor import PersonOutputs, Predictor
from romp_hydra.models.romp import PARAMS_DIM, ROMPNet

__all__ = [
    "MATCH_MODES",
    "PARAMS_DIM",
    "CheckpointError",
    "HRNet",
    "LoadReport",
    "Model",
    "PeoplePicker",
    "PersonOutputs",
    "Predictor",
    "ROMPNet",
    "ResNet",
    "Selection",
    "build",
    "build_backbone",
    "build_model",
    "forward_step",
    "load_backbone_weights",
    "load_network_weights",
    "match_to_gt",
    "parse",
    "sample_params",
    "save_network",
]
