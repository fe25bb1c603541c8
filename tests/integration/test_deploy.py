"""The deployment, checked offline with the real tools: kustomize renders every overlay, kubernetes-validate --strict
accepts every core object, the Strimzi / CloudNativePG / Prometheus Operator / External Secrets objects match the
models generated from their CRDs, promtool checks and unit-tests the alerts, hadolint reads the Dockerfile.

Then what no schema knows: the settings each Deployment's environment gives the service, the hardening of every
container, the aggregator never outnumbering the partitions. Alerts and metrics: test_monitoring.py.
The tools are installed on first use into .run/tools/ (tests/fixtures/deploy_toolchain.py); a missing tool fails.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from shared.settings import AggregateSettings, CommonSettings, IngestSettings, QuerySettings
from tests.fixtures import deploy_toolchain as tools
from tests.fixtures.deployment import DEPLOY, ROOT, SERVICES, run

OVERLAYS = sorted(p.name for p in (DEPLOY / "k8s" / "overlays").iterdir() if p.is_dir())
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")  # the oldest release we support and the newest the validator knows
LIBPQ_VARIABLES = {"PGPASSWORD", "PGSSLMODE"}  # read by asyncpg itself, not by shared/settings.py


# ---- rendering --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    kubectl = tools.kubectl()
    out: dict[str, list[dict[str, Any]]] = {}
    for overlay in OVERLAYS:
        result = run([str(kubectl), "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)])
        assert result.returncode == 0, f"kustomize {overlay}:\n{result.stderr}"
        out[overlay] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return out


def is_core(obj: dict[str, Any]) -> bool:
    """Built-in API groups have no dot (apps, batch, policy, ...) or end in .k8s.io; CRD groups are domains."""
    group = obj["apiVersion"].rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(objs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objs:
        spec = o.get("spec", {})
        if o["kind"] in ("Deployment", "Job"):
            yield f"{o['kind']}/{o['metadata']['name']}", spec["template"]["spec"]
        elif o["kind"] == "CronJob":
            yield f"CronJob/{o['metadata']['name']}", spec["jobTemplate"]["spec"]["template"]["spec"]


def test_overlays_exist() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_pass_kubernetes_validate_strict(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, tmp_path: Path
) -> None:
    core = [o for o in rendered[overlay] if is_core(o)]
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(yaml.safe_dump_all(core))
    args = [a for v in KUBERNETES_VERSIONS for a in ("-k", v)]
    result = run([*tools.kubernetes_validate(), "--strict", *args, str(manifest)])
    lines = (result.stdout + result.stderr).splitlines()
    problems = [line for line in lines if not line.startswith("INFO")]
    assert result.returncode == 0 and not problems, "\n".join(problems)
    passed = [line for line in lines if " passed for resource " in line]
    assert len(passed) == len(core) * len(KUBERNETES_VERSIONS), "\n".join(lines)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_match_their_crd_models(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    custom = [o for o in rendered[overlay] if not is_core(o)]
    unknown = {o["apiVersion"] for o in custom} - {f"{group}/v1" for group in tools.CRD_MODELS}
    assert not unknown, f"no CRD model to check {sorted(unknown)} against"
    folder = tools.node_models()
    work = folder / f"check-{overlay}-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        (work / "objects.json").write_text(json.dumps(custom))
        (work / "validate.mjs").write_text(tools.VALIDATE_JS)
        result = run(["node", str(work / "validate.mjs"), str(work / "objects.json"), json.dumps(tools.CRD_MODELS)],
                     cwd=work)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("PASS ") == len(custom)
        # The validators accept unknown fields (the API server prunes them, kubectl apply rejects them):
        # the TypeScript compiler's excess-property check against the same models rejects them here.
        lines, names = [], {}
        for i, obj in enumerate(custom):
            group, version = obj["apiVersion"].split("/")
            module = f"{tools.CRD_MODELS[group]}/{group}/{version}/{obj['kind']}"
            lines.append(f'import type {{ I{obj["kind"]} as T{i} }} from "{module}";')
        for i, obj in enumerate(custom):
            names[len(lines) + 1] = f"{obj['kind']}/{obj['metadata']['name']}"
            lines.append(f"export const o{i}: T{i} = {json.dumps(obj)};")
        (work / "objects.ts").write_text("\n".join(lines) + "\n")
        (work / "tsconfig.json").write_text(json.dumps({"compilerOptions": {
            "strict": True, "noEmit": True, "skipLibCheck": True, "target": "es2022",
            "module": "nodenext", "moduleResolution": "nodenext"}, "files": ["objects.ts"]}))
        tsc = run(["node", str(folder / "node_modules" / "typescript" / "bin" / "tsc"), "-p", str(work)], cwd=work)
        errors = [re.sub(r"^objects\.ts\((\d+),\d+\)", lambda m: names.get(int(m[1]), m[0]), line)
                  for line in tsc.stdout.splitlines() if "error TS" in line]
        assert tsc.returncode == 0 and not errors, "\n".join(errors) or tsc.stdout + tsc.stderr
    finally:
        shutil.rmtree(work)


def test_no_secret_values_are_committed(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for overlay, objs in rendered.items():
        assert not find(objs, "Secret"), f"{overlay} renders a Secret: secrets come from CNPG or External Secrets"
        made = {"d06-pg-app"}  # CloudNativePG makes <cluster>-app for the owner role
        made |= {o["spec"]["target"]["name"] for o in find(objs, "ExternalSecret")}
        if overlay == "dev":
            made |= dev_script_secrets()
        for where, spec in pod_specs(objs):
            for c in spec.get("initContainers", []) + spec["containers"]:
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["name"] in made, f"{overlay} {where}: nothing makes Secret {ref['name']}"
        roles = one(objs, "Cluster", "d06-pg")["spec"]["managed"]["roles"]
        assert {r["passwordSecret"]["name"] for r in roles} <= made


def dev_script_secrets() -> set[str]:
    """The Secrets deploy/tools/dev-secrets.sh creates: `for role in ...` x `name="d06-pg-${role}"`."""
    script = (DEPLOY / "tools" / "dev-secrets.sh").read_text()
    roles = re.search(r"^for role in ([a-z ]+); do$", script, flags=re.M)
    assert roles and 'name="d06-pg-${role}"' in script
    return {f"d06-pg-{role}" for role in roles[1].split()}


# ---- what the services are told -------------------------------------------------------------------------


def container_env(objs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        maps = [o for o in find(objs, "ConfigMap") if o["metadata"]["name"] == name]
        assert len(maps) == 1, f"ConfigMap {name} is not rendered"
        env.update(maps[0]["data"])
    for e in container.get("env", []):
        env[e["name"]] = e.get("value", "from-a-secret")
    return env


def settings_aliases() -> set[str]:
    names: set[str] = set()
    for cls in (CommonSettings, IngestSettings, AggregateSettings, QuerySettings):
        for field in cls.model_fields.values():
            alias = field.validation_alias
            names |= {str(c) for c in getattr(alias, "choices", [])}
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_set_is_one_the_code_reads(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    known = settings_aliases() | LIBPQ_VARIABLES | {"DATABASE_URL", "D06_SCHEMA_WAIT_SECONDS"}
    for cm in find(rendered[overlay], "ConfigMap"):
        unknown = set(cm["data"]) - known
        assert not unknown, f"{overlay} ConfigMap {cm['metadata']['name']} sets {sorted(unknown)}, read by nothing"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_service_gets_its_role_its_database_and_the_topic(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered[overlay]
    settings_cls, port = SERVICES[service]
    pod = one(objs, "Deployment", f"d06-{service}")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][:3] == ["python", "-m", f"services.{service}"]  # exits 0 on SIGTERM
    assert f"--port={port}" in container["command"]
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    env = container_env(objs, container)
    for name in list(os.environ):
        if name.startswith(("D06_", "INGEST_", "AGGREGATE_", "QUERY_", "KAFKA_", "DATABASE_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = settings_cls()  # the prod validator refuses dev defaults, so this also proves they are set
    if overlay == "prod" and service != "aggregate":
        # The defaults are generous so `make bench` is not throttled; production brakes a runaway key.
        assert 0 < settings.rate_limit <= 200 and settings.rate_burst <= 1000

    url = urlsplit(settings.database_url)
    cluster = one(objs, "Cluster", "d06-pg")
    assert url.hostname == f"d06-pg-{'ro' if service == 'query' else 'rw'}", "query reads the replicas only"
    assert url.username == f"d06_{service}" and url.password is None, "each service its own role, no password in git"
    assert url.path == f"/{cluster['spec']['bootstrap']['initdb']['database']}"
    assert env["DATABASE_URL"] == settings.database_url, "the d06 CLI run in the pod uses the same role"
    assert env["PGPASSWORD"] == "from-a-secret"
    role = next(r for r in cluster["spec"]["managed"]["roles"] if r["name"] == url.username)
    assert role["login"] is True and "inRoles" not in role, "its rights are the migrations' per-table grants only"
    assert settings.db_role == url.username, "the service acts as the role it logs in as"

    kafka = one(objs, "Kafka", "d06-kafka")
    listener = next(li for li in kafka["spec"]["kafka"]["listeners"] if li["type"] == "internal")
    assert settings.kafka_bootstrap == f"d06-kafka-kafka-bootstrap:{listener['port']}"
    topics = {t["spec"]["topicName"]: t["spec"] for t in find(objs, "KafkaTopic")}
    assert {settings.events_topic, settings.dead_letter_topic} <= set(topics)
    assert settings.topic_partitions == topics[settings.events_topic]["partitions"], (
        "D06_TOPIC_PARTITIONS must equal the topic's partitions: the relay compares them"
    )
    for topic in (settings.events_topic, settings.dead_letter_topic):
        assert settings.topic_replication == topics[topic]["replicas"], (
            "a topic the services re-create (an emptied broker) must be as replicated as its KafkaTopic"
        )

    (init,) = pod["initContainers"]
    assert init["command"] == ["python", "/opt/d06/tools/wait_for_schema.py"]
    assert container_env(objs, init) == env, "the schema wait uses the service's own role"


def test_the_migrations_grant_every_role_cloudnative_pg_creates(rendered: dict[str, list[dict[str, Any]]]) -> None:
    granted: set[str] = set()
    for path in sorted((ROOT / "shared" / "migrations" / "versions").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"migration_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # defines upgrade(); nothing runs
        granted |= set(getattr(module, "GRANTS", {}))
    job = " ".join(one(rendered["prod"], "Job", "d06-migrate")["spec"]["template"]["spec"]["containers"][0]["args"])
    for objs in rendered.values():
        roles = {r["name"] for r in one(objs, "Cluster", "d06-pg")["spec"]["managed"]["roles"]}
        assert roles == {f"d06_{s}" for s in SERVICES}
        assert roles <= granted, f"no migration grants {sorted(roles - granted)} anything"
        assert f"--grant-to {','.join(f'd06_{s}' for s in SERVICES)}" in job, "wait-for-schema needs the grant"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_aggregator_never_outnumbers_the_partitions(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objs = rendered[overlay]
    aggregator = one(objs, "Deployment", "d06-aggregate")["spec"]
    partitions = one(objs, "KafkaTopic", "d06-events")["spec"]["partitions"]
    assert 1 <= aggregator["replicas"] <= partitions
    assert aggregator["strategy"]["rollingUpdate"]["maxSurge"] == 0, "a rollout must not add a consumer"
    targets = {h["spec"]["scaleTargetRef"]["name"]: h["spec"] for h in find(objs, "HorizontalPodAutoscaler")}
    assert set(targets) == {"d06-ingest", "d06-query"}
    for spec in targets.values():
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
    assert {p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for p in find(objs, "PodDisruptionBudget")} \
        == {f"d06-{s}" for s in SERVICES}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_distributed_engines_are_sized_for_what_they_promise(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objs = rendered[overlay]
    assert one(objs, "Cluster", "d06-pg")["spec"]["instances"] >= 2, "the query service needs a replica to read"
    pools = {p["metadata"]["name"]: p["spec"] for p in find(objs, "KafkaNodePool")}
    assert {r for p in pools.values() for r in p["roles"]} == {"controller", "broker"}, "KRaft: no ZooKeeper"
    brokers = sum(p["replicas"] for p in pools.values() if "broker" in p["roles"])
    for topic in find(objs, "KafkaTopic"):
        spec = topic["spec"]
        assert spec["replicas"] <= brokers
        assert spec["config"]["min.insync.replicas"] <= spec["replicas"]
        if overlay == "prod":
            assert spec["replicas"] >= 3 and spec["config"]["min.insync.replicas"] == 2
    assert one(objs, "Kafka", "d06-kafka")["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    if overlay == "prod":
        assert one(objs, "KafkaTopic", "d06-events")["spec"]["partitions"] >= 12


# ---- hardening ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_non_root_read_only_and_bounded(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    for where, spec in pod_specs(rendered[overlay]):
        assert spec["automountServiceAccountToken"] is False, where
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] >= 10000, where
        assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault", where
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], where
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{where}: /tmp must be an emptyDir"
            res = c["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]) and "memory" in res["limits"], where
            assert not c["image"].endswith(":latest") and ":" in c["image"], f"{where}: pin the image tag"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_migration_and_routes(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    objs = rendered[overlay]
    for service in SERVICES:
        (c,) = one(objs, "Deployment", f"d06-{service}")["spec"]["template"]["spec"]["containers"]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        svc = one(objs, "Service", f"d06-{service}")
        assert svc["spec"]["ports"][0]["targetPort"] == "http"
    (migrate,) = one(objs, "Job", "d06-migrate")["spec"]["template"]["spec"]["containers"]
    assert "d06 migrate" in " ".join(migrate["command"] + migrate.get("args", []))
    assert urlsplit(container_env(objs, migrate)["DATABASE_URL"]).username == "d06", "migrations run as the owner"
    paths = {p["path"]: p["backend"]["service"]["name"]
             for rule in one(objs, "Ingress", "d06")["spec"]["rules"] for p in rule["http"]["paths"]}
    assert paths == {"/v1/events": "d06-ingest", "/v1": "d06-query"}, "only the /v1 API is public"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_admit_only_the_needed_flows(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objs = rendered[overlay]
    policies = {p["metadata"]["name"]: p["spec"] for p in find(objs, "NetworkPolicy")}
    assert policies["d06-default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    for service, (_, port) in SERVICES.items():
        spec = policies[f"d06-{service}"]
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == f"d06-{service}"
        assert [p["port"] for rule in spec["ingress"] for p in rule["ports"]] == [port]
        peers = {peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                 for rule in spec["ingress"] for peer in rule["from"]}
        assert peers == ({"monitoring"} if service == "aggregate" else {"monitoring", "ingress-nginx"})
    for o in objs:
        if o["kind"] in ("Deployment", "Job", "CronJob"):
            template = o["spec"].get("template") or o["spec"]["jobTemplate"]["spec"]["template"]
            assert template["metadata"]["labels"].get("d06.gov.vn/postgres-client") == "true", o["metadata"]["name"]
    kafka_clients = {o["metadata"]["name"] for o in find(objs, "Deployment")
                     if o["spec"]["template"]["metadata"]["labels"].get("d06.gov.vn/kafka-client") == "true"}
    assert kafka_clients == {"d06-ingest", "d06-aggregate"}
    listener = one(objs, "Kafka", "d06-kafka")["spec"]["kafka"]["listeners"][0]
    assert listener["networkPolicyPeers"] == [{"podSelector": {"matchLabels": {"d06.gov.vn/kafka-client": "true"}}}]


def test_service_monitor_scrapes_the_three_services(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for objs in rendered.values():
        monitor = one(objs, "ServiceMonitor", "d06")["spec"]
        selected = [s["metadata"]["name"] for s in find(objs, "Service")
                    if monitor["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
        assert sorted(selected) == [f"d06-{s}" for s in sorted(SERVICES)]
        assert monitor["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}]


# ---- image ----------------------------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint_and_runs_unprivileged() -> None:
    result = run([str(tools.hadolint()), "--failure-threshold", "info", str(ROOT / "Dockerfile")])
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)", text, flags=re.M)
    assert stages == ["build", "runtime"], "multi-stage: build, then a runtime without build tools"
    assert re.search(r"^USER 10001:10001$", text, flags=re.M)
    assert "pip install" in text and "--editable" not in text and " -e " not in text
    ignored = (ROOT / ".dockerignore").read_text()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, flags=re.M):
        for path in line.split()[:-1]:
            assert f"!{path.rstrip('/')}" in ignored, f".dockerignore drops {path}"


def test_schema_wait_classifies_the_database_against_the_image() -> None:
    spec = importlib.util.spec_from_file_location("wait_for_schema", DEPLOY / "tools" / "wait_for_schema.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    heads, known = module.script_revisions("postgresql://nobody@nowhere/d06")  # reads files, connects to nothing
    assert heads and heads <= known
    head = next(iter(heads))
    older = known - heads
    assert module.classify({head}, heads, known) is module.Schema.CURRENT
    assert module.classify(set(), heads, known) is module.Schema.BEHIND
    assert module.classify({"f00dcafe1234"}, heads, known) is module.Schema.NEWER
    for revision in older:
        assert module.classify({revision}, heads, known) is module.Schema.BEHIND
