"""Entry point of a snapshot's archive or restore, run by the guest as a root command.

Run as ``python3 -I -S /opt/sbx/guest/snapshot_main.py archive|restore ...`` with
the guest bundle's own Python (see ``sbx_guest.snapshot_files``); like
``main.py`` it puts its own directory on ``sys.path`` by hand.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sbx_guest.snapshot_files import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
