"""Figures and plot series of a trained SALGL model, one module per figure family.

- ``common``: figure creation on the Agg canvas, atomic save, grids, colours, font sizes;
- ``memory``: the scenes' co-occurrence memory as probabilities and shares;
- ``curves``: training history from DVCLive (losses, learning rate, selection mAP);
- ``ap``: per-label AP; ``pr``: precision-recall series and curves;
- ``heatmaps``: per-scene and per-label-group co-occurrence heatmaps;
- ``clouds``: per-scene label clouds; ``scenes``: top labels per scene, learned vs true scenes
  (the matching itself: salgl.scene_match);
- ``stage``: every figure of the plots stage at once (``make_all_plots``, ``model_figures``).

Heavy libraries (matplotlib, sklearn, wordcloud, pandas) are imported inside the functions
that need them, and this file imports nothing, so one figure module can be used without
loading the others (the ablation's figure needs only ``common``; ``memory`` loads torch and
the model package for the model's P(j | i)).
"""
