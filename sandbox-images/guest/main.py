"""Entry point of the in-sandbox guest: the sandbox's main process, under init.

Run as ``python3 -I /opt/sbx/guest/main.py``; isolated mode keeps the
sandbox's environment (PYTHONPATH, user site) from changing what the guest
imports, so the directory holding this file is put on ``sys.path`` by hand.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sbx_guest.server import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
