import sys

from ldifs_core.cli import main

sys.exit(main())
