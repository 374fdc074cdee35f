"""Evaluation: the same model path as training in eval mode, GT matching, and metrics per protocol."""
