"""The OpenAPI 3.1 description of ``elope serve`` (``GET /openapi.json``), written out by hand: five routes,
their query options, bodies and answers, with the served model's classes and limits filled in."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _result(num_classes: int) -> dict[str, Any]:
    """The schema of one image's answer."""
    number = {"type": "number"}
    return {
        "type": "object",
        "required": ["name", "size", "classes", "box"],
        "properties": {
            "name": {"type": "string", "description": "file name of the part, or 'body'"},
            "size": {
                "type": "array",
                "items": {"type": "integer"},
                "description": "stored [width, height]",
            },
            "classes": {
                "type": "array",
                "maxItems": num_classes,
                "items": {
                    "type": "object",
                    "properties": {
                        "class": {"type": "string"},
                        "index": {"type": "integer"},
                        "score": number,
                    },
                },
                "description": "best first; softmax probabilities",
            },
            "box": {
                "type": "array",
                "items": number,
                "description": "x1, y1, x2, y2 in the photo's pixels",
            },
            "heatmap": {
                "description": "with ?heatmap=png a data:image/png URL (min-max grey), with =list the raw "
                "values (rows); null when the model has no localization module",
                "oneOf": [{"type": "string"}, {"type": "array"}, {"type": "null"}],
            },
            "embedding": {
                "description": "with ?embedding=true",
                "oneOf": [{"type": "array"}, {"type": "null"}],
            },
        },
    }


def _schemas(num_classes: int) -> dict[str, Any]:
    number = {"type": "number"}
    return {
        "Error": {
            "type": "object",
            "required": ["error", "status"],
            "properties": {
                "error": {"type": "string", "description": "one line: what was wrong, and the limit"},
                "status": {"type": "integer"},
            },
        },
        "Result": _result(num_classes),
        "Prediction": {
            "type": "object",
            "properties": {
                "model": {"type": "string", "description": "sha256 of the model file"},
                "results": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}},
                "notes": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "what was asked but is absent",
                },
                "elapsed_ms": number,
            },
        },
    }


def _multipart(image: dict[str, Any], most: int) -> dict[str, Any]:
    """The multipart body: the field ``image`` or ``images``, each once or repeated (on the wire one part
    and an array of one are the same), ``most`` images in all."""
    field = {"anyOf": [image, {"type": "array", "items": image, "minItems": 1, "maxItems": most}]}
    return {
        "type": "object",
        "description": f"one or several images, at most {most} in all (--max-images)",
        "properties": {"image": field, "images": field},
        "additionalProperties": False,
        "minProperties": 1,
    }


def _predict(limits: Any, num_classes: int) -> dict[str, Any]:
    query = [
        (
            "top",
            {"type": "integer", "minimum": 1, "maximum": 999_999_999, "default": 5},
            f"how many classes (at most {num_classes})",
        ),
        ("heatmap", {"enum": ["none", "png", "list"], "default": "none"}, "the heatmap, as a PNG or a list"),
        ("embedding", {"type": "boolean", "default": False}, "the embedding, when the graph has one"),
    ]
    image = {"type": "string", "format": "binary"}
    return {
        "summary": "Classify one or several photos: top classes, the box, optionally heatmap and embedding",
        "parameters": [{"name": n, "in": "query", "schema": s, "description": d} for n, s, d in query],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": _multipart(image, limits.max_images),
                    "encoding": {"image": {"contentType": "image/*"}, "images": {"contentType": "image/*"}},
                },
                "image/*": {"schema": image},
                "application/octet-stream": {"schema": image},
            },
        },
        "responses": {
            "200": {
                "description": "one result per image, in the order sent",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Prediction"}}},
            },
            "400": _error(
                f"empty, truncated or corrupt image; no image, a wrong field or more than {limits.max_images} "
                "images; bad query"
            ),
            "408": _error("the body did not arrive within the request timeout"),
            "413": _error(
                f"body over {limits.max_upload_bytes} bytes, image over {limits.max_pixels} pixels or over "
                "the decoding memory limit"
            ),
            "415": _error("not an image, or a Content-Type that carries none"),
            "503": _error(
                f"queue full ({limits.max_queue} images): retry after the Retry-After header's seconds"
            ),
            "504": _error(f"no answer within {limits.timeout_s:g} s"),
        },
    }


def openapi_document(model: Any, limits: Any) -> dict[str, Any]:
    """The OpenAPI document for a :class:`~elope.serve.model.ServedModel` served under ``limits``."""
    num_classes = len(model.classes)
    json_ok = {
        "200": {"description": "JSON", "content": {"application/json": {"schema": {"type": "object"}}}}
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "elope serve",
            "version": str(model.describe()["version"]["server"]),
            "description": "ELoPE (Hanselmann & Ney, WACV 2020): the exported one-pass graph (localize, box, "
            f"crop, classify) over HTTP. Model {model.label}, sha256 {model.sha256}, {num_classes} classes, "
            f"input {model.input_size} px.",
        },
        "paths": {
            "/predict": {"post": _predict(limits, num_classes)},
            "/health": {"get": {"summary": "Liveness and the queue's counters", "responses": json_ok}},
            "/model": {
                "get": {"summary": "Classes, input size, τ, versions, sha256, limits", "responses": json_ok}
            },
            "/openapi.json": {"get": {"summary": "This document", "responses": json_ok}},
            "/": {"get": {"summary": "The web page", "responses": {"200": {"description": "HTML"}}}},
        },
        "components": {"schemas": _schemas(num_classes)},
    }
