"""Offline schema validation of rendered Kubernetes objects.

Built-in kinds go through the `kubernetes-validate` package (the Kubernetes
OpenAPI schemas it ships, strict: unknown fields are errors). Custom
resources go through the openAPIV3Schema of their CRD (KEDA's ScaledObject
and TriggerAuthentication, the Prometheus operator's ServiceMonitor and
PrometheusRule), made strict the same way: the API server would prune an
unknown field silently, so a typo would otherwise pass unnoticed. KEDA's
trigger metadata is a free string map in the CRD, so the keys of kafka and
prometheus triggers are checked against the parameters KEDA's kafka and
prometheus scaler sources declare.
"""

import copy
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_KEY_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def _strict(schema):
    """Copy of an OpenAPI v3 schema where objects with declared properties
    reject properties they do not declare."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    return s


class CrdSchemas:
    """(apiVersion, kind) -> strict JSON schema, from CRD YAML files."""

    def __init__(self, files):
        self.schemas = {}
        for f in files:
            for crd in yaml.safe_load_all(Path(f).read_text()):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group = crd["spec"]["group"]
                kind = crd["spec"]["names"]["kind"]
                for v in crd["spec"]["versions"]:
                    schema = v["schema"]["openAPIV3Schema"]
                    self.schemas[(f"{group}/{v['name']}", kind)] = (_strict(schema), Path(f).name)

    def validate(self, obj):
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key not in self.schemas:
            return None
        schema, source = self.schemas[key]
        errors = sorted(
            jsonschema.Draft7Validator(schema).iter_errors(obj), key=lambda e: list(e.absolute_path)
        )
        return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message} [{source}]" for e in errors]


def scaler_params(*go_files):
    """Metadata keys a KEDA scaler reads from a trigger's metadata: the
    `keda:"name=a;alias, order=triggerMetadata…"` tags of its source (and
    of shared parameter structs it embeds, such as authentication's)."""
    keys = set()
    for f in go_files:
        for m in re.finditer(r'keda:"name=([A-Za-z0-9;]+),\s*order=([^,"]+)', Path(f).read_text()):
            if "triggerMetadata" in m.group(2).strip().split(";"):
                keys.update(m.group(1).split(";"))
    return keys


def kafka_trigger_params(scaler_go):
    """Metadata keys KEDA's kafka scaler reads from a trigger's metadata."""
    keys = scaler_params(scaler_go)
    if not {"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} <= keys:
        raise SystemExit(f"could not read the kafka scaler's parameters from {scaler_go}")
    return keys


def prometheus_trigger_params(scaler_go, auth_go):
    """Metadata keys KEDA's prometheus scaler reads (its own and the
    authentication parameters it embeds)."""
    keys = scaler_params(scaler_go, auth_go)
    if not {"serverAddress", "query", "threshold", "activationThreshold", "ignoreNullValues", "authModes"} <= keys:
        raise SystemExit(f"could not read the prometheus scaler's parameters from {scaler_go} and {auth_go}")
    return keys


def check_names(obj):
    errs = []
    meta = obj.get("metadata", {})
    name = meta.get("name", "")
    if not name or len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        errs.append(f"metadata.name {name!r} is not a DNS-1123 subdomain")
    if obj.get("kind") == "Service" and (len(name) > 63 or not DNS_LABEL.match(name)):
        errs.append(f"Service name {name!r} is not a DNS-1035 label")
    labels = dict(meta.get("labels") or {})
    tpl = obj.get("spec", {}).get("template", {}).get("metadata", {})
    labels.update(tpl.get("labels") or {})
    for k, v in labels.items():
        prefix, _, short = k.rpartition("/")
        if len(short) > 63 or not LABEL_KEY_NAME.match(short) or (prefix and not DNS_SUBDOMAIN.match(prefix)):
            errs.append(f"label key {k!r} is not valid")
        if not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v):
            errs.append(f"label {k}={v!r}: not a valid label value")
    return errs


NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")


def validate_objects(objs, k8s_versions, crds, kafka_keys, prometheus_keys=None):
    """Every object against its schema; returns a list of error strings."""
    errors = []
    for obj in objs:
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        errors += [f"{where}: {e}" for e in check_names(obj)]
        crd_errors = crds.validate(obj)
        if crd_errors is not None:
            errors += [f"{where}: {e}" for e in crd_errors]
        else:
            for version in k8s_versions:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    path = "/".join(map(str, e.path)) or "(root)"
                    errors.append(f"{where}: Kubernetes {version} schema: {path}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError:
                    errors.append(f"{where}: no Kubernetes {version} schema and no CRD for {obj.get('apiVersion')}")
        if obj.get("kind") == "ScaledObject":
            for t in obj.get("spec", {}).get("triggers", []):
                if t.get("type") == "prometheus" and prometheus_keys is not None:
                    md = t.get("metadata", {})
                    for k in sorted(set(md) - prometheus_keys):
                        errors.append(f"{where}: prometheus trigger metadata {k!r} is not a parameter of KEDA's prometheus scaler")
                    for k in ("serverAddress", "query", "threshold"):
                        if not md.get(k):
                            errors.append(f"{where}: prometheus trigger without {k}")
                    for k in ("threshold", "activationThreshold"):
                        if k in md and not NUMBER.fullmatch(str(md[k])):
                            errors.append(f"{where}: {k} {md[k]!r} is not a number")
                    if md.get("serverAddress") and not re.match(r"^https?://[^/\s]+", md["serverAddress"]):
                        errors.append(f"{where}: serverAddress {md['serverAddress']!r} is not an http(s) URL")
                    if md.get("ignoreNullValues", "true") not in ("true", "false"):
                        errors.append(f"{where}: ignoreNullValues {md['ignoreNullValues']!r} is not true or false")
                    continue
                if t.get("type") != "kafka":
                    if t.get("type") != "prometheus":
                        errors.append(f"{where}: trigger type {t.get('type')!r}: the check knows kafka and prometheus only")
                    continue
                md = t.get("metadata", {})
                for k in sorted(set(md) - kafka_keys):
                    errors.append(f"{where}: kafka trigger metadata {k!r} is not a parameter of KEDA's kafka scaler")
                for k in ("bootstrapServers", "consumerGroup", "topic", "lagThreshold"):
                    if not md.get(k):
                        errors.append(f"{where}: kafka trigger without {k}")
                for k in ("lagThreshold", "activationLagThreshold"):
                    if k in md and not re.fullmatch(r"[0-9]+", md[k]):
                        errors.append(f"{where}: {k} {md[k]!r} is not a whole number")
    return errors
