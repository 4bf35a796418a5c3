"""Clear-sky masks: which observations of a cube are usable (True = clear)."""

from .boolean import clear_from_cloud_band

__all__ = ["clear_from_cloud_band"]
