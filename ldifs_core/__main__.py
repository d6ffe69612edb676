import sys

from ldifs_core.command import main

sys.exit(main())
