"""What the HTTP services (the gateway and the console) share.

- :mod:`~pipeline.http.server`: uvicorn with a graceful stop on SIGTERM;
- :mod:`~pipeline.http.body`: the request body read once, bounded, and replayed to the
  app; JSON answers sent straight from ASGI middleware;
- :mod:`~pipeline.http.json_errors`: every refusal as ``{"error": reason}``;
- :mod:`~pipeline.http.readiness`: a background check of Kafka that ``/readyz`` reads;
- :mod:`~pipeline.http.routers`: an app wired from one router per route group.
"""
