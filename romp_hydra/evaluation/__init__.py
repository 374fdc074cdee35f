"""Evaluation: the same model path as training in eval mode, GT matching, and metrics per protocol.

Modules (imported explicitly, so that importing the package stays cheap and training can import the runner):

* `protocols` - `Protocol` (what is compared, aligned, matched, reported) and `JointComparison`;
* `runner` - `evaluate_batches` -> `EvaluationResult` (3D people), `Validator` (validation during training);
* `crowdpose` - OKS-based keypoint AP (`KeypointAPEvaluator`, `evaluate_keypoint_ap`);
* `run` - `evaluate(cfg)`, behind ``python -m romp_hydra.evaluate``.
"""
