"""DVC stage 'prepare': run it for one dataset with its settings from params.yaml.

Usage: python stages/prepare.py DATASET
"""

import sys

from salgl.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("prepare", sys.argv[1:]))
