#!/usr/bin/env python
"""Export a HyenaPixel-family model to ONNX: ``python export/to_onnx.py --res 224``.

The command line lives in :mod:`hyena_serve.exporting.cli` (also ``hyena-serve export``);
run with ``--help`` for the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyena_serve.exporting.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
