"""DVC stage 'train': run it for one dataset with its settings from params.yaml.

Usage: python stages/train.py DATASET
"""

import sys

from salgl.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("train", sys.argv[1:]))
