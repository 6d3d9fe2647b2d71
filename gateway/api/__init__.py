"""The library systems' JSON API under ``/api/`` (issue 12, item 1): the change feed
``GET /api/v1/changes`` and its OpenAPI 3.1 document ``GET /api/v1/openapi.json``."""

from gateway.api.resource import ApiResource

__all__ = ["ApiResource"]
