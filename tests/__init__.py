"""The project's tests, one tier per folder (``.ci/tiers``): ``unit`` (no broker; mirrors
the package), ``integration`` (a real Kafka), ``chaos``, ``deploy`` and ``browser``.

Every folder is a package and pytest imports in its default ``prepend`` mode, so a test
module is ``tests.integration.test_gateway``: two folders may hold files of the same
name, and helpers are imported by their full name
(``from tests.integration.runtime_support import running``).
"""
