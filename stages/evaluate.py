"""DVC stage 'evaluate': run it for one dataset with its settings from params.yaml.

Usage: python stages/evaluate.py DATASET
"""

import sys

from salgl.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("evaluate", sys.argv[1:]))
