"""Reading and writing videos, frame folders, masks and overlays. Knows nothing of models."""
