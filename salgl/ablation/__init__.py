"""The seeded ablation of scene awareness (docs/results.md, experiments/ablation/dvc.yaml).

- ``design``: the params file, read and checked, and the cells (data, variant, seed) of its matrix
- ``run``: prepare and embed a data variant; train and score every cell of one seed, side by side
- ``reading``: the reading rule fixed before the runs: convergence check, t bounds, DiD, verdict
- ``bootstrap``: the paired bootstrap over test images
- ``summary``: the tables over seeds, the paired differences and the verdicts
- ``figure``: test mAP per run with the paired differences, and the convergence curves

Where each writes is ``salgl.paths.AblationPaths``.
"""
