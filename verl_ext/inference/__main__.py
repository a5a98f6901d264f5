"""`python -m verl_ext.inference generate|pseudo-label ...`: the offline stages of the loop (see `offline`)."""

import sys

from .offline import main

if __name__ == "__main__":
    sys.exit(main())
