"""`python -m agf`: the `agf` command; `torchrun --nproc-per-node N -m agf train ...` trains data-parallel."""

import sys

from agf.cli import main

sys.exit(main())
