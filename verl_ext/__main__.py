"""`python -m verl_ext COMMAND ...`: the `visplay` command without the console script (see `verl_ext.cli`)."""

import sys

from verl_ext.cli import main

if __name__ == "__main__":
    sys.exit(main())
