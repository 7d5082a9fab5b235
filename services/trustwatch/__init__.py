"""trustwatch: continuous TrustLLM measurement of LLM endpoints.

The import package lives in the repository's ``services/`` folder: one sub-package per service
(``scheduler``, ``generator``, ``judge``, ``aggregator``) and the shared pieces they are built from
(``bus``, ``tasks``, ``evaluators``, ``stats``, ``datasets``, ``telemetry``).
"""

__version__ = "0.1.0"
