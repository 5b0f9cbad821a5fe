"""``alphapulse demo`` (``make demo``): the whole desk, headless, on the bundled data.

It drives the Dagster assets in process, so it lives outside the domain core (which never
imports Dagster). ``demo.command`` registers the sub-command and imports ``demo.run`` (and
with it Dagster) only when the command runs.
"""
