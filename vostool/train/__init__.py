"""Training of the learned methods (``vostool train``).

* :mod:`.run` — a run from the options of ``vostool train``: network size, data, held-out split.
* :mod:`.sampling` — the deterministic clip sampler (videos are read by :mod:`vostool.datasets`).
* :mod:`.augment` — flips, reversal, crops, affine; "lucid dream" clip synthesis (SAVOS).
* :mod:`.losses` — instance IoU loss (AGSS-VOS eq. 7), cross-entropy, tolerance rule.
* :mod:`.recipes` — each paper's recipe (batches and losses) for agss, savos, embedding, ovsnet.
* :mod:`.loop` — the trainer: checkpoints, exact ``--resume``, validation, fp16 export.
* :mod:`.validate` — J&F of a method on held-out sequences (bench metrics).
"""
