import sys

from asr_lab.cli import main

sys.exit(main())
