"""``python -m pipeline.dev.kafka start|stop|status|fetch [--port N] ...``"""

import sys

from pipeline.dev.kafka.command_line import main

sys.exit(main())
