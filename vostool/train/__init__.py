"""Training of the learned methods (``vostool train``).

* :mod:`.data` — DAVIS / YouTube-VOS readers into memory and the deterministic clip sampler.
* :mod:`.augment` — flips, reversal, crops, affine; "lucid dream" clip synthesis (SAVOS).
* :mod:`.synthetic` — generator of synthetic videos (pretraining from scratch, tests).
* :mod:`.losses` — instance IoU loss (AGSS-VOS eq. 7), cross-entropy, tolerance rule.
* :mod:`.recipes` — each paper's recipe (batches and losses) for agss, savos, embedding, ovsnet.
* :mod:`.loop` — the trainer: checkpoints, exact ``--resume``, validation, fp16 export.
* :mod:`.validate` — J&F of a method on held-out sequences (bench metrics).
"""
