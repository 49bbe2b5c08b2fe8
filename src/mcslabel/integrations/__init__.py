"""Integrations: container engines (Docker), pytest, assertion helpers.

Owns: the glue between the jobs and the outside world's runtimes.
May import: the model and the public API of allocation, relabeling and
verification. Never the CLI; never another job's private module.
Subpackages are imported on use (the Docker SDK is optional).
"""

from __future__ import annotations

__all__: list[str] = []
