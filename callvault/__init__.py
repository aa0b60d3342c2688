"""Callvault control plane and CLI.

The pipeline packages (``streams``, ``schemas``, ``sinks``, ``sip_ingest``) live beside this one;
this package holds what they share: typed settings, the error tree, the local dev stack, the
control topics (workspaces, later keys, trunks, erasure) and the ``callvault`` command line.
Importing it has no side effects.
"""

__version__ = "0.1.0"
