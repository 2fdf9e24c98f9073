"""DVC stages of the scene-awareness ablation (experiments/ablation/dvc.yaml).

Usage:
  python stages/ablation.py prepare DATA [--raw FOLDER]
  python stages/ablation.py embed DATA
  python stages/ablation.py run SEED
  python stages/ablation.py summary
Settings come from experiments/ablation/params.yaml (--params to read another file).
"""

import sys

from salgl.cli import run_ablation_stage

if __name__ == "__main__":
    sys.exit(run_ablation_stage(sys.argv[1:]))
