"""The KubeRay manifests in cluster/ against the RayCluster and RayJob CRD schemas, the way the API server checks
them, without a cluster: every field known (kubectl's strict field validation), every type and integer range right.

The schemas are KubeRay v1.7.0's CRDs (`ray-operator/config/crd/bases/`, the `v1` version's openAPIV3Schema),
read from ../shared/reference/kuberay (SOURCES.md there names the tag, commit and checksums; they are not copied
into this repository). Tests skip when that folder is absent. The Kubernetes extensions are mapped to plain JSON
Schema before `jsonschema` validates:
- `x-kubernetes-int-or-string` -> an integer or a string;
- an object schema with `properties` and neither `additionalProperties` nor `x-kubernetes-preserve-unknown-fields`
  -> `additionalProperties: false`: Kubernetes prunes unknown fields (a typo is silently dropped, and
  `kubectl apply` warns or, with --validate=strict, fails); here it fails;
- `format: int32/int64` -> the integer's range.
Not checked: the 5 CEL rules (`x-kubernetes-validations`) and list-map key uniqueness.
"""

from __future__ import annotations

import copy
import hashlib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT.parent / "shared" / "reference" / "kuberay"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
SHA256 = {"ray.io_rayclusters.yaml": "c44704442eef0c6721ad40c1d66782c8bd3fdab9d3344306a5820910a679baa1",
          "ray.io_rayjobs.yaml": "01a5cf3b17c1769fda44af7e82debcd98722f0c27b9ab84d084681c6649121f5"}
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

jsonschema = pytest.importorskip("jsonschema")
pytestmark = pytest.mark.skipif(not all((CRDS / f).is_file() for f in CRD_FILES.values()),
                                reason=f"KubeRay CRDs not in {CRDS} (see its SOURCES.md)")


def kubernetes_to_json_schema(schema: Any) -> Any:
    """A copy of a CRD's structural schema that plain JSON Schema validates as the API server would."""
    if isinstance(schema, list):
        return [kubernetes_to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: kubernetes_to_json_schema(v) for k, v in schema.items()
           if k not in ("properties", "additionalProperties", "items") and not k.startswith("x-kubernetes-")}
    if "properties" in schema:
        out["properties"] = {name: kubernetes_to_json_schema(s) for name, s in schema["properties"].items()}
    if "items" in schema:
        out["items"] = kubernetes_to_json_schema(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = kubernetes_to_json_schema(schema["additionalProperties"])
    elif "additionalProperties" in schema:
        out["additionalProperties"] = schema["additionalProperties"]
    elif "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("type") == "integer" and schema.get("format") in INT_RANGES:
        out["minimum"], out["maximum"] = INT_RANGES[schema["format"]]
    return out


@cache
def _schema(kind: str) -> dict[str, Any]:
    path = CRDS / CRD_FILES[kind]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256[path.name], f"{path} is not the copy SOURCES.md names"
    crd = yaml.safe_load(path.read_text())
    assert crd["spec"]["names"]["kind"] == kind and crd["spec"]["group"] == "ray.io"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return kubernetes_to_json_schema(version["schema"]["openAPIV3Schema"])


def _errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(_schema(doc["kind"]))
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:300]}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted((ROOT / "cluster").glob("kuberay_*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("apiVersion") == "ray.io/v1":
                out.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return out


MANIFESTS = _manifests()


def test_there_are_ray_manifests_of_both_kinds():
    assert {doc["kind"] for _, doc in MANIFESTS} == set(CRD_FILES)


@pytest.mark.parametrize("where,doc", MANIFESTS, ids=[w for w, _ in MANIFESTS])
def test_manifest_matches_its_crd_schema(where, doc):
    errors = _errors(doc)
    assert not errors, f"{where}:\n" + "\n".join(errors)


def _rayjob() -> dict[str, Any]:
    return copy.deepcopy(next(doc for _, doc in MANIFESTS if doc["kind"] == "RayJob"))


@pytest.mark.parametrize("change,expected", [
    (lambda d: d["spec"].update(activeDeadlineSecond=60), "activeDeadlineSecond"),  # a typo: dropped by the API server
    (lambda d: d["spec"].update(activeDeadlineSeconds="1h"), "'1h' is not of type 'integer'"),
    (lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(minReplicas=2**31), "is greater than"),
    (lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
     .update(imagePullPolice="Always"), "imagePullPolice"),
    (lambda d: d["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]
     ["limits"].update(cpu=[8]), "is not valid under any of the given schemas"),
])
def test_the_check_catches_what_the_api_server_would(change, expected):
    """The mapping is strict enough to matter: each broken copy of a real RayJob fails where it is broken."""
    doc = _rayjob()
    assert not _errors(doc)
    change(doc)
    errors = _errors(doc)
    assert any(expected in e for e in errors), errors


def test_int_or_string_quantities_pass():
    doc = _rayjob()
    limits = doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    limits.update(cpu=8, memory="32Gi")
    assert not _errors(doc)
