"""Object ids <-> tensor slots. Slot 0 is the background; objects take slots 1..K in the order
they are first given, so an object added mid-video never moves another object's slot."""

from __future__ import annotations

import numpy as np


class ObjectManager:
    """Maps user object ids (1..254, as in the mask PNGs) to slots 1..K."""

    def __init__(self, ids: list[int] | None = None) -> None:
        self.ids: list[int] = []
        for i in ids or []:
            self.add(i)

    @property
    def num_objects(self) -> int:
        return len(self.ids)

    def add(self, obj_id: int) -> int:
        """Register ``obj_id`` (if new) and return its slot."""
        if obj_id not in self.ids:
            self.ids.append(int(obj_id))
        return self.ids.index(obj_id) + 1

    def slot(self, obj_id: int) -> int:
        return self.ids.index(obj_id) + 1

    def slot_to_id_lut(self) -> np.ndarray:
        """``(K + 1,)`` uint8: slot -> object id (slot 0 -> 0)."""
        return np.array([0, *self.ids], dtype=np.uint8)
