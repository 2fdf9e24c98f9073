"""DVC stage 'plots': run it for one dataset with its settings from params.yaml.

Usage: python stages/plots.py DATASET
"""

import sys

from salgl.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("plots", sys.argv[1:]))
