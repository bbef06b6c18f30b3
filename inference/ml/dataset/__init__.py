"""Building the tampering dataset: ``readers`` (corpora in), ``splits`` (patients to train/val/test),
``builder`` (plan, tamper, write through ``inference.ml.coco``), ``card`` and ``realism`` (what came out)."""
