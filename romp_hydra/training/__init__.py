"""Training: the loop, checkpoints with exact resume, and distributed helpers."""
