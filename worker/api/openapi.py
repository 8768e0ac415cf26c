"""The read API's OpenAPI 3.0 document, served at /openapi.json (and checked against the
running worker by tests/api/test_schemathesis.py)."""

from __future__ import annotations

from typing import Any

from worker.api.query import ID_PATTERN, LIST_PATTERN, MAX_K, MAX_LIST_CHARS
from worker.reasons import KINDS
from worker.validation import MAX_ID_LENGTH

_ANSWER_FIELDS = [
    *("user_id", "items", "model_version", "variant", "generated_at"),
    *("strategy", "fresh", "cold_start"),
]
_LIST = {"type": "string", "maxLength": MAX_LIST_CHARS, "pattern": LIST_PATTERN}
_STRING_LIST = {"type": "array", "items": {"type": "string"}}


def _answer_schemas() -> dict[str, Any]:
    """The recommendation list and what it lists."""
    reason = {
        "type": "object",
        "required": ["kind"],
        "properties": {
            "kind": {"type": "string", "enum": list(KINDS)},
            "item_id": {"type": "string", "description": "the item the reason names"},
            "category": {"type": "string"},
        },
    }
    listed = {
        "type": "object",
        "required": ["item_id", "score"],
        "properties": {
            "item_id": {"type": "string"},
            "score": {"type": "number"},
            "category": {"type": "string", "nullable": True},
            "reasons": {"type": "array", "items": {"$ref": "#/components/schemas/Reason"}},
        },
    }
    answer = {
        "type": "object",
        "required": _ANSWER_FIELDS,
        "properties": {
            "user_id": {"type": "string"},
            "event_id": {
                "type": "string",
                "nullable": True,
                "description": "the latest event the list answered (null: computed on demand)",
            },
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/ListedItem"}},
            "model_version": {"type": "string"},
            "variant": {"type": "string", "description": "the user's A/B variant"},
            "generated_at": {"type": "number", "description": "epoch seconds"},
            "strategy": {"type": "string", "enum": ["user_vector", "trending", "new_item"]},
            "fresh": {"type": "boolean", "description": "computed for this request"},
            "cold_start": {
                "type": "boolean",
                "description": "the user has no usable history: the trending list",
            },
            "trigger_item_ids": _STRING_LIST,
        },
    }
    return {"Reason": reason, "ListedItem": listed, "Recommendations": answer}


def _schemas() -> dict[str, Any]:
    similar = {
        "type": "object",
        "required": ["item_id", "items", "model_version"],
        "properties": {
            "item_id": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/ListedItem"}},
            "model_version": {"type": "string"},
        },
    }
    readiness = {
        "type": "object",
        "required": ["ready", "started", "waiting_for_partitions", "failing"],
        "properties": {
            "ready": {"type": "boolean"},
            "started": {"type": "boolean"},
            "waiting_for_partitions": _STRING_LIST,
            "failing": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    error = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
    return {
        **_answer_schemas(),
        "Similar": similar,
        "Readiness": readiness,
        "Error": error,
    }


def _json(schema: str, description: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _id_parameter(name: str) -> dict[str, Any]:
    schema = {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_ID_LENGTH,
        "pattern": ID_PATTERN,
    }
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _narrowing(default_k: int) -> list[dict[str, Any]]:
    return [
        {
            "name": "k",
            "in": "query",
            "description": f"list length (default {default_k})",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_K},
        },
        {
            "name": "categories",
            "in": "query",
            "description": "only these categories, comma-separated",
            "schema": _LIST,
        },
        {
            "name": "exclude",
            "in": "query",
            "description": "item ids never listed, comma-separated",
            "schema": _LIST,
        },
    ]


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "a parameter is invalid",
        404: "unknown item",
        500: "an unexpected failure (logged by the worker)",
        503: "the worker is starting, or a dependency cannot answer",
    }
    return {str(code): _json("Error", text[code]) for code in codes}


def openapi_document(default_k: int) -> dict[str, Any]:
    fresh = {
        "name": "fresh",
        "in": "query",
        "description": "compute the list now through the events path (nothing recorded)",
        "schema": {"type": "boolean"},
    }
    paths = {
        "/recommendations/{user_id}": {
            "get": {
                "summary": "The user's latest list (a new user: the cold-start list, flagged)",
                "operationId": "getRecommendations",
                "parameters": [_id_parameter("user_id"), *_narrowing(default_k), fresh],
                "responses": {
                    "200": _json("Recommendations", "the list"),
                    **_errors(400, 500, 503),
                },
            }
        },
        "/items/{item_id}/similar": {
            "get": {
                "summary": "The items nearest an item's vector",
                "operationId": "getSimilarItems",
                "parameters": [_id_parameter("item_id"), *_narrowing(default_k)],
                "responses": {"200": _json("Similar", "the items"), **_errors(400, 404, 500, 503)},
            }
        },
        "/healthz": {
            "get": {
                "summary": "The process is alive",
                "operationId": "getHealth",
                "responses": {"200": {"description": "alive"}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Started, partitions assigned, every dependency answering",
                "operationId": "getReadiness",
                "responses": {
                    "200": _json("Readiness", "ready"),
                    "503": _json("Readiness", "not ready, and why"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus exposition",
                "operationId": "getMetrics",
                "responses": {
                    "200": {"description": "metrics", "content": {"text/plain": {"schema": {}}}}
                },
            }
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "streamrec worker", "version": "1"},
        "paths": paths,
        "components": {"schemas": _schemas()},
    }
