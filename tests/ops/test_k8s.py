"""k8s/: every kustomization renders, validates against the Kubernetes API schemas offline, and keeps
the properties the deployment promises (hardened pods, probes, resources, wiring, network flows)."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.ops import tools
from tests.ops.conftest import K8S, components, kustomizations

Obj = dict[str, Any]
#: The Kubernetes version the manifests are validated against (the oldest minor we support; native
#: gRPC probes and CronJob.timeZone are GA well before it).
K8S_VERSION = "1.31.0"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
CRD_GROUPS = ("monitoring.coreos.com/",)
SERVICES_WITH_METRICS = {"generator": 9101, "judge": 9102, "dispatcher": 9103, "aggregator": 9100}


# -- helpers ----------------------------------------------------------------------------------------


def pod_template(obj: Obj) -> Obj:
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    template: Obj = spec["template"]
    return template


def workloads(objs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for o in objs:
        if o["kind"] in WORKLOADS:
            yield o, pod_template(o)


def containers(pod: Obj) -> list[Obj]:
    found: list[Obj] = pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
    return found


def by_kind(objs: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels / matchExpressions) selects these labels."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        op, key, values = e["operator"], e["key"], e.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def rendered_with_generator(rendered: dict[str, list[Obj]]) -> dict[str, list[Obj]]:
    """The renderings that are complete stacks (they include a generator)."""
    return {k: v for k, v in rendered.items() if "generator" in by_kind(v, "Deployment")}


# -- rendering and schemas --------------------------------------------------------------------------


def test_every_kustomization_renders(rendered: dict[str, list[Obj]]) -> None:
    assert {"base", "overlays/dev", "overlays/prod"} <= set(rendered)
    for name, objs in rendered.items():
        assert objs, f"{name} rendered nothing"
        names = [(o["kind"], o["metadata"]["name"]) for o in objs]
        assert len(names) == len(set(names)), f"{name}: duplicate objects"


def test_everything_lands_in_one_namespace(rendered: dict[str, list[Obj]]) -> None:
    """Objects a component adds get the overlay's namespace too (a missing `namespace:` in an overlay
    leaves them in "default", where their ConfigMap references no longer resolve)."""
    for name, objs in rendered.items():
        namespaces = {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"}
        assert len(namespaces) == 1 and None not in namespaces, f"{name}: namespaces {namespaces}"
        assert set(by_kind(objs, "Namespace")) == namespaces, f"{name}: the Namespace object is not the namespace used"


def test_every_component_is_rendered_by_an_overlay() -> None:
    used: set[Path] = set()
    for d in kustomizations():
        k = yaml.safe_load((d / "kustomization.yaml").read_text(encoding="utf-8"))
        used |= {(d / c).resolve() for c in k.get("components", [])}
    unused = [str(c.relative_to(K8S)) for c in components() if c.resolve() not in used]
    assert not unused, f"components no overlay renders (so nothing tests them): {unused}"


def test_objects_validate_against_the_kubernetes_schemas(rendered: dict[str, list[Obj]]) -> None:
    errors = []
    for name, objs in rendered.items():
        for o in objs:
            if o["apiVersion"].startswith(CRD_GROUPS):
                continue  # custom resources: checked structurally below
            try:
                kubernetes_validate.validate(o, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{name}: {o['kind']}/{o['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}")
    assert not errors, "\n".join(errors)


def test_strict_validation_catches_a_misspelt_field() -> None:
    """Guards the test above: the validator must reject what the API server would."""
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80, "targetPrt": 8080}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_custom_resources_are_well_formed(rendered: dict[str, list[Obj]]) -> None:
    seen = set()
    for objs in rendered.values():
        for o in objs:
            if o["kind"] == "ServiceMonitor":
                seen.add(o["kind"])
                assert o["apiVersion"] == "monitoring.coreos.com/v1"
                assert set(o["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
                assert o["spec"]["selector"]["matchLabels"]
                for ep in o["spec"]["endpoints"]:
                    assert set(ep) <= {"port", "path", "interval", "scrapeTimeout", "scheme"} and ep["port"]
            elif o["kind"] == "PrometheusRule":
                seen.add(o["kind"])
                assert o["apiVersion"] == "monitoring.coreos.com/v1"
                for g in o["spec"]["groups"]:
                    assert g["name"] and g["rules"]
                    for r in g["rules"]:
                        assert ("alert" in r) != ("record" in r) and r["expr"], r
    assert seen == {"ServiceMonitor", "PrometheusRule"}


def test_operator_objects_carry_the_release_label(rendered: dict[str, list[Obj]]) -> None:
    """kube-prometheus-stack selects ServiceMonitors and PrometheusRules by `release`; the component
    sets it on both (and on nothing else) from one patch."""
    for overlay, objs in rendered.items():
        for o in objs:
            labels = o["metadata"].get("labels", {})
            if o["kind"] in ("ServiceMonitor", "PrometheusRule"):
                assert labels.get("release") == "kube-prometheus-stack", (overlay, o["kind"])
            else:
                assert "release" not in labels, (overlay, o["kind"], o["metadata"]["name"])


def test_service_monitor_selects_every_metrics_service(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["overlays/prod"]
    (sm,) = by_kind(objs, "ServiceMonitor").values()
    port = sm["spec"]["endpoints"][0]["port"]
    scraped = {
        name
        for name, s in by_kind(objs, "Service").items()
        if selects(sm["spec"]["selector"], s["metadata"].get("labels", {}))
        and any(p.get("name") == port for p in s["spec"]["ports"])
    }
    assert scraped == set(SERVICES_WITH_METRICS)


def test_prometheusrule_is_the_monitoring_rules_file() -> None:
    rule = yaml.safe_load((K8S / "components/prometheus-operator/prometheusrule.yaml").read_text(encoding="utf-8"))
    source = yaml.safe_load((tools.ROOT / "monitoring/rules/trustwatch.rules.yml").read_text(encoding="utf-8"))
    assert rule["spec"]["groups"] == source["groups"], "run: python monitoring/prometheusrule.py"


# -- pods -------------------------------------------------------------------------------------------


def test_pods_are_hardened(rendered: dict[str, list[Obj]]) -> None:
    problems = []
    for name, objs in rendered.items():
        for w, pod in workloads(objs):
            where = f"{name}: {w['kind']}/{w['metadata']['name']}"
            spec = pod["spec"]
            psc = spec.get("securityContext", {})
            if spec.get("automountServiceAccountToken") is not False:
                problems.append(f"{where}: automountServiceAccountToken must be false")
            if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
                problems.append(f"{where}: host namespaces")
            for v in spec.get("volumes", []):
                if "hostPath" in v:
                    problems.append(f"{where}: hostPath volume {v['name']} (not allowed by the restricted profile)")
            for c in containers(pod):
                sc = c.get("securityContext", {})
                if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
                    problems.append(f"{where}/{c['name']}: runAsNonRoot")
                if (sc.get("runAsUser", psc.get("runAsUser")) or 0) == 0:
                    problems.append(f"{where}/{c['name']}: needs a non-zero runAsUser")
                seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {}))
                if seccomp.get("type") != "RuntimeDefault":
                    problems.append(f"{where}/{c['name']}: seccompProfile RuntimeDefault")
                if sc.get("readOnlyRootFilesystem") is not True:
                    problems.append(f"{where}/{c['name']}: readOnlyRootFilesystem")
                if sc.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{where}/{c['name']}: allowPrivilegeEscalation false")
                if sc.get("privileged"):
                    problems.append(f"{where}/{c['name']}: privileged")
                if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
                    problems.append(f"{where}/{c['name']}: capabilities must drop ALL and add none")
    assert not problems, "\n".join(problems)


def test_containers_have_requests_and_limits(rendered: dict[str, list[Obj]]) -> None:
    problems = []
    for name, objs in rendered.items():
        for w, pod in workloads(objs):
            for c in containers(pod):
                r = c.get("resources", {})
                for part in ("requests", "limits"):
                    for res in ("cpu", "memory"):
                        if res not in r.get(part, {}):
                            problems.append(f"{name}: {w['metadata']['name']}/{c['name']}: no {part}.{res}")
    assert not problems, "\n".join(problems)


def test_long_running_containers_have_probes(rendered: dict[str, list[Obj]]) -> None:
    problems = []
    for name, objs in rendered.items():
        for w, pod in workloads(objs):
            if w["kind"] in ("Job", "CronJob"):
                continue  # batch: runs and exits
            for c in pod["spec"]["containers"]:
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in c:
                        problems.append(f"{name}: {w['metadata']['name']}/{c['name']}: no {probe}")
    assert not problems, "\n".join(problems)


def test_judge_uses_native_grpc_probes(rendered: dict[str, list[Obj]]) -> None:
    judge = by_kind(rendered["base"], "Deployment")["judge"]
    (c,) = pod_template(judge)["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"]["port"] == 50051


def test_images_have_explicit_tags(rendered: dict[str, list[Obj]]) -> None:
    for name, objs in rendered.items():
        for _, pod in workloads(objs):
            for c in containers(pod):
                image = c["image"]
                tag = image.rsplit("/", 1)[-1].partition(":")[2]
                assert tag and tag != "latest" or "@sha256:" in image, f"{name}: {c['name']}: pin {image}"


# -- wiring -----------------------------------------------------------------------------------------


def test_references_resolve(rendered: dict[str, list[Obj]]) -> None:
    """Every ConfigMap, Secret, PVC and ServiceAccount a pod names is in the same rendering, and
    every $(VAR) in a container's args is one of its env variables."""
    problems = []
    for name, objs in rendered.items():
        have = {
            kind: set(by_kind(objs, kind))
            for kind in ("ConfigMap", "Secret", "PersistentVolumeClaim", "ServiceAccount")
        }
        for w, pod in workloads(objs):
            where = f"{name}: {w['kind']}/{w['metadata']['name']}"
            claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
            want = [("ServiceAccount", pod["spec"].get("serviceAccountName", "default"))]
            for v in pod["spec"].get("volumes", []):
                if "configMap" in v:
                    want.append(("ConfigMap", v["configMap"]["name"]))
                if "secret" in v:
                    want.append(("Secret", v["secret"]["secretName"]))
                if "persistentVolumeClaim" in v:
                    want.append(("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]))
            for c in containers(pod):
                mounts = {m["name"] for m in c.get("volumeMounts", [])}
                volumes = {v["name"] for v in pod["spec"].get("volumes", [])} | claims
                if mounts - volumes:
                    problems.append(f"{where}/{c['name']}: mounts undeclared volumes {mounts - volumes}")
                for ef in c.get("envFrom", []):
                    if "configMapRef" in ef:
                        want.append(("ConfigMap", ef["configMapRef"]["name"]))
                    if "secretRef" in ef:
                        want.append(("Secret", ef["secretRef"]["name"]))
                env_names = {e["name"] for e in c.get("env", [])}
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {})
                    if "configMapKeyRef" in ref:
                        want.append(("ConfigMap", ref["configMapKeyRef"]["name"]))
                    if "secretKeyRef" in ref:
                        want.append(("Secret", ref["secretKeyRef"]["name"]))
                for arg in c.get("args", []) + c.get("command", []):
                    for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
                        if var not in env_names:
                            problems.append(f"{where}/{c['name']}: $({var}) in args is not an env variable")
            for kind, ref in want:
                if ref not in have[kind] and not (kind == "ServiceAccount" and ref == "default"):
                    problems.append(f"{where}: {kind} {ref} is not in the rendering")
    assert not problems, "\n".join(problems)


def test_services_select_pods_and_their_ports(rendered: dict[str, list[Obj]]) -> None:
    problems = []
    for name, objs in rendered.items():
        pods = [(w, p) for w, p in workloads(objs)]
        for s in by_kind(objs, "Service").values():
            matched = [p for _, p in pods if selects({"matchLabels": s["spec"]["selector"]}, p["metadata"]["labels"])]
            if not matched:
                problems.append(f"{name}: Service {s['metadata']['name']} selects no pod")
                continue
            declared = [cp for p in matched for c in p["spec"]["containers"] for cp in c.get("ports", [])]
            ports = {cp.get("name") for cp in declared} | {cp["containerPort"] for cp in declared}
            for sp in s["spec"]["ports"]:
                if sp.get("targetPort", sp["port"]) not in ports:
                    problems.append(
                        f"{name}: Service {s['metadata']['name']} targets a missing port {sp.get('targetPort')}"
                    )
        for pdb in by_kind(objs, "PodDisruptionBudget").values():
            if not any(selects(pdb["spec"]["selector"], p["metadata"]["labels"]) for _, p in pods):
                problems.append(f"{name}: PodDisruptionBudget {pdb['metadata']['name']} selects no pod")
    assert not problems, "\n".join(problems)


def test_metrics_ports_match_the_prometheus_config(rendered: dict[str, list[Obj]]) -> None:
    prom = yaml.safe_load((tools.ROOT / "monitoring/prometheus.yml").read_text(encoding="utf-8"))
    local = {j["job_name"]: int(j["static_configs"][0]["targets"][0].rsplit(":", 1)[1]) for j in prom["scrape_configs"]}
    assert local == SERVICES_WITH_METRICS
    for objs in rendered_with_generator(rendered).values():
        for svc, port in SERVICES_WITH_METRICS.items():
            s = by_kind(objs, "Service")[svc]
            assert {p["name"]: p["port"] for p in s["spec"]["ports"]}["metrics"] == port
            pod = pod_template(by_kind(objs, "Deployment")[svc])
            env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
            assert env["TRUSTWATCH_METRICS_PORT"] == str(port)


def test_secrets_hold_placeholders_only(rendered: dict[str, list[Obj]]) -> None:
    for name, objs in rendered.items():
        for s in by_kind(objs, "Secret").values():
            assert "data" not in s, f"{name}: Secret {s['metadata']['name']}: use stringData placeholders"
            for key, value in s.get("stringData", {}).items():
                assert "REPLACE_ME" in value, f"{name}: Secret {s['metadata']['name']}.{key} holds a value"


def test_suite_and_target_config_parse(rendered: dict[str, list[Obj]]) -> None:
    from trustwatch.scheduler.suite import parse_suite, parse_target

    for name, objs in rendered.items():
        cms = {o["metadata"]["name"].rsplit("-", 1)[0]: o for o in objs if o["kind"] == "ConfigMap"}
        suite = parse_suite(yaml.safe_load(cms["trustwatch-suite"]["data"]["suite.yaml"]), f"{name} suite")
        assert suite.tasks
        if name in rendered_with_generator(rendered):
            target = parse_target(cms["trustwatch-target"]["data"]["target"])
            generator = by_kind(objs, "Deployment")["generator"]
            image = pod_template(generator)["spec"]["containers"][0]["image"]
            assert (target.backend == "vllm") == ("vllm" in image), f"{name}: {target.backend} target on {image}"


def test_gpu_generator_runs_on_a_gpu_node(rendered: dict[str, list[Obj]]) -> None:
    pod = pod_template(by_kind(rendered["overlays/prod"], "Deployment")["generator"])
    (c,) = pod["spec"]["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["spec"]["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    assert any(v.get("persistentVolumeClaim", {}).get("claimName") == "models" for v in pod["spec"]["volumes"])


def test_the_scheduler_is_a_long_lived_deployment_of_a_schedule_file(rendered: dict[str, list[Obj]]) -> None:
    """Issue 7: one scheduler Deployment fires the schedules of a ConfigMap'd schedule file (two targets
    in base), which parses with the suite mounted beside it; no CronJob re-runs one fixed run id."""
    from trustwatch.scheduler.schedule import parse_config

    for name, objs in rendered.items():
        assert "scheduler" not in by_kind(objs, "CronJob"), name
        dep = by_kind(objs, "Deployment")["scheduler"]
        assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
        pod = pod_template(dep)
        (c,) = pod["spec"]["containers"]
        assert c["args"][:3] == ["scheduler", "--config", "/etc/trustwatch/schedule.yaml"], name
        sources = {
            s["configMap"]["name"] for v in pod["spec"]["volumes"] for s in v.get("projected", {}).get("sources", [])
        }
        assert {"trustwatch-schedule", "trustwatch-suite"} <= {n.rsplit("-", 1)[0] for n in sources}, sources
        cms = {o["metadata"]["name"].rsplit("-", 1)[0]: o for o in objs if o["kind"] == "ConfigMap"}
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "suite.yaml").write_text(cms["trustwatch-suite"]["data"]["suite.yaml"])
            cfg = parse_config(
                yaml.safe_load(cms["trustwatch-schedule"]["data"]["schedule.yaml"]), f"{name} schedule", Path(d)
            )
        assert cfg.schedules
        if name == "base":
            assert len(cfg.targets) == 2 and all(len(s.targets) == 2 for s in cfg.schedules)


# -- network policies -------------------------------------------------------------------------------

PROMETHEUS = ({"kubernetes.io/metadata.name": "monitoring"}, {"app.kubernetes.io/name": "prometheus"})


def _peer_matches(peer: Obj, ns_labels: dict[str, str] | None, pod_labels: dict[str, str]) -> bool:
    if "ipBlock" in peer:
        return False  # addresses outside the cluster; never a pod flow here
    if "namespaceSelector" in peer:
        if ns_labels is None or not selects(peer["namespaceSelector"], ns_labels):
            return False
    elif ns_labels is not None:
        return False  # a bare podSelector means this namespace
    return selects(peer.get("podSelector", {}), pod_labels)


def _rules_allow(
    policies: list[Obj],
    direction: str,
    own: dict[str, str],
    peer_ns: dict[str, str] | None,
    peer: dict[str, str],
    port: int,
) -> bool:
    field, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    mine = [
        p
        for p in policies
        if direction in p["spec"].get("policyTypes", ["Ingress"]) and selects(p["spec"]["podSelector"], own)
    ]
    if not mine:
        return True  # not isolated in this direction
    for p in mine:
        for rule in p["spec"].get(field, []):
            peers_ok = peers_key not in rule or any(_peer_matches(x, peer_ns, peer) for x in rule[peers_key])
            ports_ok = "ports" not in rule or any(pp.get("port") == port for pp in rule["ports"])
            if peers_ok and ports_ok:
                return True
    return False


def allowed(objs: list[Obj], src: Peer, dst: str, port: int) -> bool:
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    dst_labels = {"app": dst}
    if isinstance(src, tuple):  # a pod in another namespace: only our ingress side applies
        return _rules_allow(policies, "Ingress", dst_labels, src[0], src[1], port)
    src_labels = {"app": src}
    return _rules_allow(policies, "Egress", src_labels, None, dst_labels, port) and _rules_allow(
        policies, "Ingress", dst_labels, None, src_labels, port
    )


Peer = str | tuple[dict[str, str], dict[str, str]]
FLOWS: list[tuple[Peer, str, int]] = [
    *[(s, "kafka", 9092) for s in ("generator", "dispatcher", "aggregator", "scheduler")],
    ("dispatcher", "judge", 50051),
    ("aggregator", "postgres", 5432),
    ("scheduler", "postgres", 5432),
    *[(PROMETHEUS, svc, port) for svc, port in SERVICES_WITH_METRICS.items()],
]

DENIED: list[tuple[Peer, str, int]] = [
    ("judge", "kafka", 9092),
    ("generator", "judge", 50051),
    ("generator", "postgres", 5432),
    ("dispatcher", "postgres", 5432),
    ("kafka", "judge", 50051),
    ("aggregator", "judge", 50051),
    (({"kubernetes.io/metadata.name": "default"}, {"app": "anything"}), "aggregator", 9100),
    (({"kubernetes.io/metadata.name": "monitoring"}, {"app": "grafana"}), "judge", 9102),
    ("dispatcher", "judge", 9102),
]


def test_network_policies_deny_by_default(rendered: dict[str, list[Obj]]) -> None:
    for name, objs in rendered.items():
        deny = by_kind(objs, "NetworkPolicy")["default-deny"]
        assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, name


def test_network_policies_allow_the_service_flows(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["overlays/dev"]  # the overlay with every in-cluster part, PostgreSQL included
    missing_flows = [f for f in FLOWS if not allowed(objs, f[0], f[1], f[2])]
    assert not missing_flows, f"flows the NetworkPolicies block: {missing_flows}"
    extra = [f for f in DENIED if allowed(objs, f[0], f[1], f[2])]
    assert not extra, f"flows the NetworkPolicies should block: {extra}"


# -- tools ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_kustomize_installs_with_the_pinned_go_install() -> None:
    """The install command CI relies on (tests/ops/tools.py) works with this machine's Go."""
    if not shutil.which("go"):
        tools.missing("Go is not installed")
    with tempfile.TemporaryDirectory() as gobin:
        done = tools.go_install_kustomize(Path(gobin))
        assert done.returncode == 0, done.stderr[-3000:]
        version = tools.run([str(Path(gobin) / "kustomize"), "version"])
        assert version.stdout.strip() == tools.KUSTOMIZE_VERSION
