"""Deployment files checked offline against the schemas their consumers use, and against the code.

A manifest that `kubectl apply` rejects, a compose file `docker compose` will not load, or a
dashboard panel querying a metric nobody exports all fail silently until someone deploys. So:
Kubernetes kinds are validated against kubernetes-validate's bundled OpenAPI schemas in strict
mode (unknown fields fail, as with `kubectl apply --validate=strict`), KEDA's kinds against the
CRDs vendored in deploy/schemas, compose files against the compose-spec schema docker compose
embeds. Then the files are held to the code: the Procfile's commands, the settings that are
required, the health routes, the task time limits and the metrics the code defines.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import re
import shlex
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml
from flower.urls import handlers as flower_handlers

from workers import queues
from workers.factory import DEAD_LETTER_QUEUE
from workers.queues import QUEUE_NAMES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMAS = DEPLOY / "schemas"
K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))
COMPOSE_FILES = [ROOT / "docker-compose.yml", DEPLOY / "compose" / "worker-metrics.yml"]
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
# The oldest and the newest Kubernetes the manifests are meant for.
K8S_VERSIONS = ("1.30", "1.37")
CRDS = ("keda.sh_scaledobjects.yaml", "keda.sh_triggerauthentications.yaml")
SECRET = "offgrid-secrets"
# Procfile process of each component.
PROCESSES = {"api": "web", "worker": "worker", "beat": "beat", "flower": "flower"}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
METRIC_SOURCES = ("api", "push", "sync", "tasks", "workers")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _k8s_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in K8S_FILES:
        for doc in _documents(path):
            yield f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in _k8s_documents() if doc["kind"] == kind}


# --- validators -----------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """Close every object schema that lists its properties, as strict field validation does."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@cache
def _crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    validators = {}
    for name in CRDS:
        crd = yaml.safe_load((SCHEMAS / name).read_text())
        for version in crd["spec"]["versions"]:
            if version["served"]:
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                schema = _strict(version["schema"]["openAPIV3Schema"])
                validators[key] = jsonschema.Draft4Validator(schema)
    return validators


def validate_k8s(doc: dict[str, Any], version: str) -> None:
    """Raise a ValidationError (or SchemaNotFoundError for an unknown kind) for a bad manifest."""
    custom = _crd_validators().get((doc["apiVersion"], doc["kind"]))
    if custom is not None:
        assert isinstance(doc.get("metadata", {}).get("name"), str), "metadata.name is required"
        custom.validate(doc)
    else:
        kubernetes_validate.validate(doc, version, strict=True)


@cache
def _compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    return jsonschema.Draft202012Validator(schema)


# --- what the code defines ------------------------------------------------------------------------

METRIC_CLASSES = {
    "Counter": "counter",
    "Gauge": "gauge",
    "Histogram": "histogram",
    "CounterMetricFamily": "counter",
    "GaugeMetricFamily": "gauge",
    "HistogramMetricFamily": "histogram",
}


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _strings(node: ast.AST | None) -> list[str]:
    if isinstance(node, ast.List | ast.Tuple):
        return [elt.value for elt in node.elts if isinstance(elt, ast.Constant)]
    return []


@cache
def defined_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """Every series name the code exports -> (metric family, its labels)."""
    series: dict[str, tuple[str, frozenset[str]]] = {}
    for package in METRIC_SOURCES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call) or _call_name(node) not in METRIC_CLASSES:
                    continue
                if not node.args or not isinstance(node.args[0], ast.Constant):
                    continue
                name, kind = node.args[0].value, METRIC_CLASSES[_call_name(node)]
                keywords = {kw.arg: kw.value for kw in node.keywords}
                if _call_name(node).endswith("MetricFamily"):
                    labels = _strings(keywords.get("labels"))
                else:
                    positional = node.args[2] if len(node.args) > 2 else None
                    labels = _strings(keywords.get("labelnames", positional))
                family = name.removesuffix("_total") if kind == "counter" else name
                names = {
                    "counter": [f"{family}_total"],
                    "gauge": [family],
                    "histogram": [f"{family}_bucket", f"{family}_sum", f"{family}_count"],
                }[kind]
                for sample in names:
                    extra = {"le"} if sample.endswith("_bucket") else set()
                    series[sample] = (family, frozenset(labels) | extra)
    return series


def _procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {
        name: shlex.split(command) for name, _, command in (line.partition(": ") for line in lines)
    }


def _required_settings() -> set[str]:
    """Variables load_settings() always requires (calls outside any `if`), plus the JWT secret:
    HS256 or JWKS, the Secret carries one of them."""
    tree = ast.parse((ROOT / "config" / "settings.py").read_text())
    load = next(
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "load_settings"
    )
    required = {"JWT_SECRET"}

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If):
            return
        if isinstance(node, ast.Call) and len(node.args) >= 2:
            name = node.args[1]
            has_default = len(node.args) > 3 or any(kw.arg == "default" for kw in node.keywords)
            if isinstance(name, ast.Constant) and (
                _call_name(node) == "_required" or (_call_name(node) == "_url" and not has_default)
            ):
                required.add(name.value)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for statement in load.body:
        visit(statement)
    return required


def _task_time_limits() -> dict[str, int]:
    limits = {}
    for path in (ROOT / "tasks").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and _call_name(node) == "task":
                keywords = {kw.arg: kw.value for kw in node.keywords}
                limit, name = keywords.get("time_limit"), keywords.get("name")
                # name=queues.<TASK>.name (workers.queues owns the names)
                if (
                    isinstance(limit, ast.Constant)
                    and isinstance(name, ast.Attribute)
                    and isinstance(name.value, ast.Attribute)
                ):
                    limits[getattr(queues, name.value.attr).name] = limit.value
    return limits


def _api_routes() -> set[str]:
    routes = set()
    for path in (ROOT / "api").glob("*.py"):
        routes |= set(re.findall(r"\.route\(\s*\"([^\"]+)\"", path.read_text()))
    return routes


# --- schemas --------------------------------------------------------------------------------------


def _k8s_cases() -> Iterator[Any]:
    """Built-in kinds against each Kubernetes version; KEDA's kinds once, against their CRD."""
    for where, doc in _k8s_documents():
        custom = (doc["apiVersion"], doc["kind"]) in _crd_validators()
        for version in K8S_VERSIONS[-1:] if custom else K8S_VERSIONS:
            yield pytest.param(doc, version, id=f"{where}@{'crd' if custom else version}")


@pytest.mark.parametrize(("doc", "version"), list(_k8s_cases()))
def test_k8s_manifest_matches_its_schema(doc: dict[str, Any], version: str) -> None:
    validate_k8s(doc, version)


def _api_deployment() -> dict[str, Any]:
    return copy.deepcopy(_by_kind("Deployment")["offgrid-api"])


def _scaled_object() -> dict[str, Any]:
    return copy.deepcopy(_by_kind("ScaledObject")["offgrid-worker"])


def _replicas_two(doc: dict[str, Any]) -> None:
    doc["spec"]["replicas"] = "two"


def _unknown_container_field(doc: dict[str, Any]) -> None:
    doc["spec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"


def _numeric_trigger_value(doc: dict[str, Any]) -> None:
    doc["spec"]["triggers"][0]["metadata"]["value"] = 20


def _hpa_field_on_keda(doc: dict[str, Any]) -> None:
    doc["spec"]["minReplicas"] = 1


@pytest.mark.parametrize(
    ("make", "breakage"),
    [
        (_api_deployment, _replicas_two),
        (_api_deployment, _unknown_container_field),
        (_scaled_object, _numeric_trigger_value),
        (_scaled_object, _hpa_field_on_keda),
    ],
    ids=["replicas-string", "unknown-field", "keda-numeric-metadata", "keda-unknown-field"],
)
def test_validator_rejects_a_broken_manifest(
    make: Callable[[], dict[str, Any]], breakage: Callable[[dict[str, Any]], None]
) -> None:
    doc = make()
    validate_k8s(doc, K8S_VERSIONS[-1])  # the intact copy passes
    breakage(doc)
    with pytest.raises(jsonschema.ValidationError):
        validate_k8s(doc, K8S_VERSIONS[-1])


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_matches_compose_spec(path: Path) -> None:
    _compose_validator().validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize(
    "breakage",
    [
        lambda web: web.update(profile=["monitoring"]),
        lambda web: web.update(ports=8000),
    ],
    ids=["unknown-key", "ports-not-a-list"],
)
def test_compose_validator_rejects_a_broken_file(
    breakage: Callable[[dict[str, Any]], None],
) -> None:
    compose = yaml.safe_load(COMPOSE_FILES[0].read_text())
    breakage(compose["services"]["web"])
    with pytest.raises(jsonschema.ValidationError):
        _compose_validator().validate(compose)


def test_vendored_schemas_match_their_recorded_digests() -> None:
    recorded = dict(
        re.findall(
            r"\| `([^`]+)` \|[^|]*\| `([0-9a-f]{64})` \|", (SCHEMAS / "README.md").read_text()
        )
    )
    files = {p.name for p in SCHEMAS.iterdir() if p.suffix in (".json", ".yaml")}
    assert set(recorded) == files
    for name, digest in recorded.items():
        assert hashlib.sha256((SCHEMAS / name).read_bytes()).hexdigest() == digest, name


# --- compose --------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILES[0].read_text())


def _strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_in(item)


def test_profile_services_require_no_variable_at_load() -> None:
    """Compose interpolates every service, enabled or not: a `${VAR:?}` in a profile's service
    would stop a plain `docker compose up` that never asked for that profile."""
    for name, service in _compose()["services"].items():
        if service.get("profiles"):
            required = [s for s in _strings_in(service) if re.search(r"(?<!\$)\$\{\w+:?\?", s)]
            assert not required, f"{name}: {required}"


def test_published_ports_are_loopback_only() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every address"


def test_monitoring_mounts_exist_in_the_repository() -> None:
    services = [s for s in _compose()["services"].values() if "monitoring" in s.get("profiles", [])]
    assert {s["image"].split(":")[0] for s in services} == {"prom/prometheus", "grafana/grafana"}
    for service in services:
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source


# --- Prometheus -----------------------------------------------------------------------------------


def test_prometheus_scrapes_what_compose_serves() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    services = _compose()["services"]
    worker_env = yaml.safe_load(COMPOSE_FILES[1].read_text())["services"]["worker"]["environment"]
    # What each service listens on: web's published container port, the overlay's metrics port.
    listens = {
        "web": {int(p.rsplit(":", 1)[1]) for p in services["web"]["ports"]},
        "worker": {int(worker_env["WORKER_METRICS_PORT"])},
    }
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert len(jobs) == len(set(jobs))
    scraped = set()
    for job in config["scrape_configs"]:
        assert set(job) <= {"job_name", "metrics_path", "static_configs", "dns_sd_configs"}
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                assert int(port) in listens[host], target
                scraped.add(host)
        for dns in job.get("dns_sd_configs", []):
            for host in dns["names"]:
                assert dns["type"] == "A" and dns["port"] in listens[host], host
                scraped.add(host)
    assert scraped == set(listens)


# --- Grafana --------------------------------------------------------------------------------------

GRAFANA_INTERVALS = re.compile(
    r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}"
)


def _labels(expr: Any, where: str) -> frozenset[str]:
    """The labels a PromQL expression's result carries; asserts every selector, matcher and
    grouping names a metric and labels that exist."""
    kind = type(expr).__name__
    if kind == "VectorSelector":
        assert expr.name in defined_metrics(), (
            f"{where}: {expr.name} is not a metric our code defines"
        )
        labels = defined_metrics()[expr.name][1] | TARGET_LABELS
        for matcher in expr.matchers.matchers:
            assert matcher.name in labels, f"{where}: {expr.name} has no label {matcher.name}"
        return labels
    if kind == "MatrixSelector":
        return _labels(expr.vector_selector, where)
    if kind in ("ParenExpr", "UnaryExpr", "SubqueryExpr"):
        return _labels(expr.expr, where)
    if kind in ("NumberLiteral", "StringLiteral"):
        return frozenset()
    if kind == "Call":
        vectors = [_labels(arg, where) for arg in expr.args]
        if expr.func.name == "histogram_quantile":
            assert "le" in vectors[1], f"{where}: histogram_quantile without `le`"
            return vectors[1] - {"le"}
        return frozenset().union(*vectors)
    if kind == "AggregateExpr":
        inner = _labels(expr.expr, where)
        if expr.modifier is None:
            return frozenset()
        grouping = frozenset(expr.modifier.labels)
        assert grouping <= inner, f"{where}: grouping by {sorted(grouping - inner)}, not labels"
        return (
            grouping if expr.modifier.type == promql_parser.AggModifierType.By else inner - grouping
        )
    if kind == "BinaryExpr":
        lhs, rhs = _labels(expr.lhs, where), _labels(expr.rhs, where)
        return lhs or rhs
    raise AssertionError(f"{where}: no rule for {kind}")


def _targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"{panel['title']}/{target['refId']}", panel, target


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_parse_and_name_defined_metrics(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    charted = set()
    for where, _, target in _targets(dashboard):
        expr = promql_parser.parse(GRAFANA_INTERVALS.sub("1m", target["expr"]))
        labels = _labels(expr, where)
        legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
        assert legend <= labels, f"{where}: legend names {sorted(legend - labels)}"
        charted |= set(re.findall(r"\boffgrid_\w+", target["expr"]))
    families = {defined_metrics()[name][0] for name in charted}
    uncharted = {family for family, _ in defined_metrics().values()} - families
    assert not uncharted, f"metrics with no panel: {sorted(uncharted)}"


def test_metric_check_bites() -> None:
    with pytest.raises(AssertionError, match="not a metric"):
        _labels(promql_parser.parse("rate(offgrid_no_such_metric_total[1m])"), "probe")
    with pytest.raises(AssertionError, match="grouping by"):
        _labels(promql_parser.parse("sum by (provider) (offgrid_push_outcomes_total)"), "probe")
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(offgrid_tasks_total[1m])")


def test_dashboard_and_datasource_provisioning_agree() -> None:
    grafana = DEPLOY / "grafana"
    datasources = yaml.safe_load((grafana / "provisioning/datasources/prometheus.yml").read_text())
    uids = {d["uid"] for d in datasources["datasources"] if d["type"] == "prometheus"}
    provider = yaml.safe_load((grafana / "provisioning/dashboards/offgrid.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in _compose()["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for where, panel, target in _targets(dashboard):
            for source in (panel["datasource"], target["datasource"]):
                assert source["uid"] in uids, where


# --- Kubernetes, held to the code -----------------------------------------------------------------


def _containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for deployment in _by_kind("Deployment").values():
        component = deployment["spec"]["template"]["metadata"]["labels"][
            "app.kubernetes.io/component"
        ]
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield component, deployment, container


def _argv(container: dict[str, Any]) -> list[str]:
    command = [*container.get("command", []), *container.get("args", [])]
    if command[:2] == ["sh", "-c"]:
        return shlex.split(command[2].rsplit("exec ", 1)[1])
    return command


def _env_names(container: dict[str, Any]) -> set[str]:
    names = {e["name"] for e in container.get("env", [])}
    maps = _by_kind("ConfigMap")
    for source in container.get("envFrom", []):
        names |= set(maps[source["configMapRef"]["name"]]["data"])
    return names


def test_containers_run_the_procfile_commands() -> None:
    procfile = _procfile()
    components = set()
    for component, _, container in _containers():
        expected, actual = procfile[PROCESSES[component]], _argv(container)
        assert len(actual) == len(expected), f"{component}: {actual} vs {expected}"
        for want, got in zip(expected, actual, strict=True):
            variable = re.fullmatch(r"\$\{(\w+):-[^}]*\}", want)
            if variable is None:
                assert got == want, f"{component}: {got!r} where the Procfile has {want!r}"
            elif "$" in got:
                assert re.fullmatch(
                    rf"\$(\{{{variable[1]}\}}|\({variable[1]}\)|{variable[1]})", got
                )
        components.add(component)
    assert components == set(PROCESSES)


def test_command_variables_are_set() -> None:
    for component, _, container in _containers():
        command = " ".join([*container.get("command", []), *container.get("args", [])])
        used = set(re.findall(r"\$[({]?(\w+)", command))
        assert used <= _env_names(container), f"{component}: {sorted(used - _env_names(container))}"


def test_containers_get_every_required_setting_from_the_secret() -> None:
    required = _required_settings()
    assert {"MONGODB_URL", "BROKER_URL", "REDIS_URL", "ADMIN_API_KEY"} <= required
    for component, _, container in _containers():
        secret = {
            e["name"] for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})
        }
        needed = required | (
            {"FLOWER_BASIC_AUTH", "RABBITMQ_MANAGEMENT_URL"} if component == "flower" else set()
        )
        assert needed <= secret, f"{component} lacks {sorted(needed - secret)}"
        for entry in container.get("env", []):
            if "valueFrom" in entry:
                ref = entry["valueFrom"]["secretKeyRef"]
                assert ref["name"] == SECRET and ref["key"] == entry["name"]
            else:
                assert entry["name"] not in required, f"{component}: {entry['name']} written inline"
    assert not _by_kind("Secret"), "secret values do not belong in the repository"
    for config in _by_kind("ConfigMap").values():
        assert not set(config["data"]) & required, "a secret in the ConfigMap"


def test_probes_hit_real_health_routes() -> None:
    routes = _api_routes()
    flower_routes = {
        h[0] if isinstance(h, tuple) else h.regex.pattern.removesuffix("$") for h in flower_handlers
    }
    probed = 0
    for component, _, container in _containers():
        for probe in ("livenessProbe", "readinessProbe"):
            if probe in container:
                path = container[probe]["httpGet"]["path"]
                assert path in (flower_routes if component == "flower" else routes), path
                ports = {p["name"] for p in container["ports"]}
                assert container[probe]["httpGet"]["port"] in ports
                probed += 1
    api = next(c for comp, _, c in _containers() if comp == "api")
    assert (api["livenessProbe"]["httpGet"]["path"], api["readinessProbe"]["httpGet"]["path"]) == (
        "/healthz",
        "/readyz",
    )
    assert probed == 4


def test_services_and_autoscalers_point_at_real_deployments() -> None:
    deployments = _by_kind("Deployment")
    for service in _by_kind("Service").values():
        selector = service["spec"]["selector"]
        matched = [
            d
            for d in deployments.values()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matched) == 1, service["metadata"]["name"]
        ports = {
            p["name"]
            for c in matched[0]["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    scaled = [
        hpa["spec"]["scaleTargetRef"]["name"]
        for hpa in _by_kind("HorizontalPodAutoscaler").values()
    ]
    scaled += [so["spec"]["scaleTargetRef"]["name"] for so in _by_kind("ScaledObject").values()]
    assert sorted(scaled) == ["offgrid-api", "offgrid-worker"]
    for name in scaled:
        # The autoscaler owns the replica count; CPU utilization is measured against requests.
        assert "replicas" not in deployments[name]["spec"], name
        for container in deployments[name]["spec"]["template"]["spec"]["containers"]:
            assert "cpu" in container["resources"]["requests"], name
    auth = _by_kind("TriggerAuthentication")
    for so in _by_kind("ScaledObject").values():
        for trigger in so["spec"]["triggers"]:
            ref = auth[trigger["authenticationRef"]["name"]]
            assert {s["name"] for s in ref["spec"]["secretTargetRef"]} == {SECRET}


def test_keda_scales_on_queues_the_workers_consume() -> None:
    worker = next(c for comp, _, c in _containers() if comp == "worker")
    argv = _argv(worker)
    consumed = set(argv[argv.index("-Q") + 1].split(","))
    assert consumed == set(QUEUE_NAMES)
    queues = {
        t["metadata"]["queueName"]
        for so in _by_kind("ScaledObject").values()
        for t in so["spec"]["triggers"]
    }
    assert queues == {"sync", "push"} and DEAD_LETTER_QUEUE.name not in queues
    # The maintenance queue has no trigger, so the workers may never scale to zero.
    assert _by_kind("ScaledObject")["offgrid-worker"]["spec"]["minReplicaCount"] >= 1


def test_worker_grace_period_outlasts_every_task() -> None:
    limits = _task_time_limits()
    assert limits, "no task time limits found"
    worker = _by_kind("Deployment")["offgrid-worker"]["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > max(limits.values()), limits


def test_worker_metrics_port_is_exposed_and_announced() -> None:
    pod = _by_kind("Deployment")["offgrid-worker"]["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(env["WORKER_METRICS_PORT"]) == ports["metrics"]
    assert int(pod["metadata"]["annotations"]["prometheus.io/port"]) == ports["metrics"]
    assert env["WORKER_METRICS_ADDRESS"] == "0.0.0.0"
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")


def test_beat_is_a_singleton() -> None:
    beat = _by_kind("Deployment")["offgrid-beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
