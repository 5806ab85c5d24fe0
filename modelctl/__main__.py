"""``python -m modelctl {render,demo,promote,rollback,status}`` — see ``--help``."""

import sys

from modelctl.cli import main

if __name__ == "__main__":
    sys.exit(main())
