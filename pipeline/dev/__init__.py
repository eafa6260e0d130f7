"""For a development machine, not the services: a local Apache Kafka from the official
jars (:mod:`.kafka`, ``python -m pipeline.dev.kafka``) and the whole pipeline on one
machine (:mod:`.stack`: ``pipeline up`` and ``pipeline demo``).

``pipeline demo`` needs the ``dev`` extra (``pip install 'kafka-agent-pipeline[dev]'``,
which ``scripts/bootstrap`` installs) for its local SMTP stand-in.
"""
