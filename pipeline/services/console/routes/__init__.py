"""The console's routes, one router per page group; ``create_app`` wires them, and the
guard (:mod:`pipeline.services.console.guard`) stands in front of every one."""
