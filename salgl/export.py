"""``salgl export``: the model as an ONNX graph with a dynamic batch, runnable without salgl.

The graph maps normalised images (batch, 3, S, S) to sigmoid ``scores`` (batch, labels) and
``scene_probs`` (batch, scenes). Label names and the input normalisation travel in the ONNX
metadata, so a consumer needs nothing but the file.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from salgl.atomic import atomic_path
from salgl.checkpoint import load_model
from salgl.errors import SalglError
from salgl.inference import ScoresAndScenes
from salgl.output_rules import check_file_output, check_not_input

# What the graph takes and gives, also stored in its metadata (salgl.input, salgl.outputs).
INPUT = ("images: float32 (batch, 3, S, S), RGB scaled to 0..1, then normalised as "
         "salgl.normalization says")
OUTPUTS = ("scores: float32 (batch, labels), sigmoid, label order salgl.labels, cut at "
           "salgl.thresholds; scene_probs: float32 (batch, scenes)")


def export_onnx(model_path: str | Path, out: str | Path, opset: int = 18) -> dict:
    try:
        import onnx
    except ImportError:
        raise SalglError("ONNX export needs the onnx extra: pip install 'salgl[onnx]'") from None
    check_file_output(out)  # before the model is loaded: a refused output changes nothing
    check_not_input(out, [("the model", model_path)])
    model, info = load_model(model_path)
    wrapper = ScoresAndScenes(model).eval()
    size = info.config.img_size
    example = torch.zeros(2, 3, size, size)
    axes = {"images": {0: "batch"}, "scores": {0: "batch"}, "scene_probs": {0: "batch"}}
    thresholds = info.extra.get("thresholds")
    meta = {"labels": json.dumps(info.labels), "normalization": json.dumps(info.normalization),
            "img_size": str(size), "source": str(model_path),
            # the per-label cuts calibrated on the validation split (null: cut at 0.5), in
            # label order: what `salgl predict` applies, so an ONNX consumer labels alike
            "thresholds": json.dumps(thresholds), "input": INPUT, "outputs": OUTPUTS}
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(wrapper, (example,), str(tmp), input_names=["images"],
                              output_names=["scores", "scene_probs"], dynamic_axes=axes,
                              opset_version=opset, dynamo=True, verbose=False,
                              external_data=False)
        except Exception as exc:
            raise SalglError(f"{model_path}: ONNX export failed ({exc})") from None
        graph = onnx.load(str(tmp))
        for key, value in meta.items():
            graph.metadata_props.add(key=f"salgl.{key}", value=value)
        onnx.save(graph, str(tmp))
    return {"labels": len(info.labels), "img_size": size, "thresholds": thresholds is not None}
