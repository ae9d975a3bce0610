"""The sandbox's own OpenAPI description covers everything in KFR's published v1.1.2."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance.sandbox import kfr

_REFERENCE_PATH = Path("shared") / "reference" / "kfr-openapi-1.1.2.yaml"
# The shared reference sits beside the checkout; a git worktree may be one level deeper.
REFERENCE = next(
    (
        folder / _REFERENCE_PATH
        for folder in Path(__file__).resolve().parents[1].parents
        if (folder / _REFERENCE_PATH).is_file()
    ),
    Path(__file__).resolve().parents[1].parent / _REFERENCE_PATH,
)
METHODS = ("get", "post", "put", "delete", "patch")


def _ours() -> dict[str, Any]:
    text = (
        importlib.resources.files("conformance.sandbox").joinpath("openapi.yaml").read_text("utf-8")
    )
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    if not REFERENCE.is_file():
        pytest.skip(
            f"KFR's published description is not here ({REFERENCE}); it is read at test time, never copied"
        )
    return yaml.safe_load(REFERENCE.read_text("utf-8"))


def _resolve(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = doc
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _error_codes(doc: dict[str, Any], response: Any) -> set[str]:
    codes: set[str] = set()
    for media in (_resolve(doc, response).get("content") or {}).values():
        examples = [media.get("example")] + [
            e.get("value") for e in (media.get("examples") or {}).values()
        ]
        codes |= {e["errorCode"] for e in examples if isinstance(e, dict) and "errorCode" in e}
    return codes


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def test_every_published_operation_is_implemented_with_its_parameters(
    reference: dict[str, Any],
) -> None:
    ours = _ours()
    our_ops = _operations(ours)
    for key, ref_op in _operations(reference).items():
        assert key in our_ops, f"{key} is missing"
        op = our_ops[key]
        assert op["operationId"] == ref_op["operationId"]
        our_params = {
            (p["in"], p["name"]): p for p in (_resolve(ours, p) for p in op.get("parameters", []))
        }
        for param in ref_op.get("parameters", []):
            ident = (param["in"], param["name"])
            assert ident in our_params, f"{key}: parameter {ident} is missing"
            assert bool(our_params[ident].get("required")) == bool(param.get("required")), (
                f"{key}: {ident} required"
            )
        if "requestBody" in ref_op:
            assert set(op["requestBody"]["content"]) == set(ref_op["requestBody"]["content"])


def test_every_published_status_and_error_code_is_covered(reference: dict[str, Any]) -> None:
    ours = _ours()
    our_ops = _operations(ours)
    all_ref_codes: set[str] = set()
    for key, ref_op in _operations(reference).items():
        our_responses = {str(k): v for k, v in our_ops[key]["responses"].items()}
        for status, ref_response in ref_op["responses"].items():
            assert str(status) in our_responses, f"{key}: status {status} is missing"
            ref_codes = _error_codes(reference, ref_response)
            all_ref_codes |= ref_codes
            missing = ref_codes - _error_codes(ours, our_responses[str(status)])
            assert not missing, f"{key} {status}: error codes {missing} are missing"
    # The table in the domain brief, as a cross-check that the comparison saw them all.
    assert {
        "KFR-001",
        "KFR-002",
        "KFR-003",
        "KFR-004",
        "KFR-005",
        "KFR-007",
        "KFR-008",
        "KFR-009",
        "KFR-010",
        "ERR-001",
        "ERR-002",
        "ERR-003",
        "ERR-004",
    } <= all_ref_codes


def test_every_published_schema_property_is_there(reference: dict[str, Any]) -> None:
    ours = _ours()["components"]["schemas"]
    for name, schema in reference["components"]["schemas"].items():
        assert name in ours, name
        assert set(schema.get("properties", {})) <= set(ours[name].get("properties", {})), name
        assert set(schema.get("required", [])) <= set(ours[name].get("required", [])), name


def test_the_description_matches_the_routes_the_sandbox_serves() -> None:
    described = {(path, method.upper()) for path, method in _operations(_ours())}
    served = {
        (route.path, method)
        for route in kfr.ROUTES
        for method in route.methods or ()
        if method != "HEAD"
        and not (route.path.endswith("}") and route.path + "/" in {r.path for r in kfr.ROUTES})
    }
    assert served == described
