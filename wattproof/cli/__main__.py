import sys

from wattproof.cli import main

sys.exit(main())
