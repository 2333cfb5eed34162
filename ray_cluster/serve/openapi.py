"""The OpenAPI document of the ingress: FastAPI's, told about keys and errors."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

__all__ = ["ERROR_SCHEMA", "KEYED_ERRORS", "openapi_document"]

#: Error answers of the keyed routes, besides those each route declares.
KEYED_ERRORS = {
    401: "No API key (`Authorization: Bearer KEY` or `X-API-Key: KEY`).",
    403: "Wrong API key.",
}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


def openapi_document(api: FastAPI, open_paths: Collection[str]) -> dict[str, Any]:
    """FastAPI's document, told about the API keys and the error shape.

    Routes in ``open_paths`` need no key and answer status documents.

    FastAPI knows neither (the keys are checked outside its routing), and it
    lists a 422 for every route with parameters, which this service never
    answers: its refusals are the 4xx in our error shape.
    """
    if api.openapi_schema is not None:
        return api.openapi_schema
    doc = get_openapi(
        title=api.title, version=api.version, summary=api.summary, routes=api.routes
    )
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    components["schemas"].pop("HTTPValidationError", None)
    components["schemas"].pop("ValidationError", None)
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    doc["security"] = [{"bearer": []}, {"apiKey": []}]
    error_ref = {"$ref": "#/components/schemas/Error"}
    error_body = {"application/json": {"schema": error_ref}}
    for path, operations in doc.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            if path in open_paths:  # their answers are status documents
                operation["security"] = []
                continue
            for status, text in KEYED_ERRORS.items():
                responses.setdefault(str(status), {"description": text})
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    response["content"] = error_body
    api.openapi_schema = doc
    return doc
