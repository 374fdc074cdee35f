"""Visualisation: OpenCV drawing of skeletons, centres and heatmaps (draw.py) and mesh overlays (render.py)."""
