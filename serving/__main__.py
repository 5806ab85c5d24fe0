"""``python -m serving [serve] [--model-uri URI] [--port 8080] [--workers N] [--timeout S]``."""

import sys

from serving.supervisor import main

if __name__ == "__main__":
    sys.exit(main())
