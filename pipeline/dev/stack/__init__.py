"""The whole pipeline on one machine: a supervisor for the services (``pipeline up``) and
a scripted tour through the live pipeline (``pipeline demo``)."""
