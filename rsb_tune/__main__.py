import sys

from rsb_tune.cli import main

sys.exit(main())
