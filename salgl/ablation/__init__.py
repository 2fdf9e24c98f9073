"""The seeded ablation of scene awareness (docs/results.md, experiments/ablation/dvc.yaml).

- ``design``: the params file, read and checked, and the cells (data, variant, seed) of its matrix
- ``run``: prepare and embed a data variant; train one cell and score its test split once
- ``summary``: the table over seeds, the paired differences and their reading rule
- ``figure``: the figure of every run's test mAP

Where each writes is ``salgl.paths.AblationPaths``.
"""
