"""k8s/: every kustomization renders, validates against the Kubernetes API schemas offline, and keeps
the properties the deployment promises (hardened pods, probes, resources, wiring, network flows)."""

from __future__ import annotations

import fnmatch
import ipaddress
import os
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
CRD_GROUPS = ("monitoring.coreos.com/", "keda.sh/", "external-secrets.io/")
#: Components no overlay of the repository includes: examples a user adds to an overlay, with the
#: overlay they are documented for and every component added to it together (paths under k8s/). Each
#: is rendered that way by a test below (the fixture ``rendered_optional``).
OPTIONAL_COMPONENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "components/external-secrets": ("overlays/prod", ("components/external-secrets",)),
    "overlays/two-targets/external-secrets": (
        "overlays/two-targets",
        ("components/external-secrets", "overlays/two-targets/external-secrets"),
    ),
}
SERVICES_WITH_METRICS = {"generator": 9101, "judge": 9102, "dispatcher": 9103, "aggregator": 9100}


# -- helpers ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered_optional(kustomize_bin: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    """Each of OPTIONAL_COMPONENTS rendered on top of its overlay, as a user adds it (with the
    components it goes with), keyed by the component's path under k8s/."""
    out: dict[str, list[Obj]] = {}
    for comp, (overlay, added) in sorted(OPTIONAL_COMPONENTS.items()):
        d = tmp_path_factory.mktemp("overlay")
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            # kustomize takes relative paths only
            "resources": [os.path.relpath(K8S / overlay, d)],
            "components": [os.path.relpath(K8S / c, d) for c in added],
        }
        (d / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
        done = tools.run([kustomize_bin, "build", str(d)])
        assert done.returncode == 0, f"kustomize build {overlay} + {added} failed:\n{done.stderr}"
        out[comp] = [o for o in yaml.safe_load_all(done.stdout) if o]
    return out


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
    assert {"base", "overlays/dev", "overlays/prod", "overlays/two-targets"} <= set(rendered)
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
    assert set(unused) == set(OPTIONAL_COMPONENTS), f"components no overlay renders (so nothing tests them): {unused}"


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


def test_custom_resources_are_well_formed(
    rendered: dict[str, list[Obj]], rendered_optional: dict[str, list[Obj]]
) -> None:
    seen = set()
    for objs in [*rendered.values(), *rendered_optional.values()]:
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
            elif o["kind"] == "ScaledObject":
                seen.add(o["kind"])
                assert o["apiVersion"] == "keda.sh/v1alpha1"
                spec = o["spec"]
                assert set(spec) <= {
                    "scaleTargetRef",
                    "minReplicaCount",
                    "maxReplicaCount",
                    "pollingInterval",
                    "cooldownPeriod",
                    "idleReplicaCount",
                    "advanced",
                    "fallback",
                    "triggers",
                }, spec
                assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
                for t in spec["triggers"]:
                    assert set(t) <= {"type", "metadata", "metricType", "authenticationRef", "name"}, t
                    assert all(isinstance(v, str) for v in t["metadata"].values()), "KEDA metadata values are strings"
                    if t["type"] == "kafka":
                        assert {"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} <= set(t["metadata"])
                        assert int(t["metadata"]["lagThreshold"]) > 0
                    else:
                        assert t["type"] == "cpu" and t["metricType"] == "Utilization", t
            elif o["kind"] == "ExternalSecret":
                seen.add(o["kind"])
                assert o["apiVersion"] == "external-secrets.io/v1"
                assert set(o["spec"]) <= {"refreshInterval", "secretStoreRef", "target", "data", "dataFrom"}
                assert o["spec"]["secretStoreRef"]["kind"] in ("SecretStore", "ClusterSecretStore")
                for d in o["spec"]["data"]:
                    assert set(d) == {"secretKey", "remoteRef"} and d["remoteRef"]["key"], d
            else:
                assert not o["apiVersion"].startswith(CRD_GROUPS), f"no structural check for {o['kind']}"
    assert seen == {"ServiceMonitor", "PrometheusRule", "ScaledObject", "ExternalSecret"}


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


def external_secrets() -> dict[str, set[str]]:
    """Secret name -> keys, of the ExternalSecrets in the optional components (components/external-secrets
    and an overlay's own, e.g. two-targets'): the documented way to bring the Secrets that no
    production rendering contains."""
    out: dict[str, set[str]] = {}
    for comp in sorted(OPTIONAL_COMPONENTS):
        for f in sorted((K8S / comp).glob("*.yaml")):
            for o in yaml.safe_load_all(f.read_text(encoding="utf-8")):
                if o and o.get("kind") == "ExternalSecret":
                    out.setdefault(o["spec"]["target"]["name"], set()).update(d["secretKey"] for d in o["spec"]["data"])
    return out


def secret_keys(secret: Obj) -> set[str]:
    return set(secret.get("stringData", {})) | set(secret.get("data", {}))


def test_references_resolve(rendered: dict[str, list[Obj]]) -> None:
    """Every ConfigMap, PVC and ServiceAccount a pod names is in the same rendering, and every $(VAR)
    in a container's args is one of its env variables. A Secret a pod needs is in the rendering (with
    the key it reads) or, where the rendering brings no Secret, one of the ExternalSecrets of
    the optional components' ExternalSecrets (with that key); only `optional: true` references may go unresolved."""
    problems = []
    brought = external_secrets()
    for name, objs in rendered.items():
        have = {kind: set(by_kind(objs, kind)) for kind in ("ConfigMap", "PersistentVolumeClaim", "ServiceAccount")}
        secrets = {n: secret_keys(o) for n, o in by_kind(objs, "Secret").items()}
        for w, pod in workloads(objs):
            where = f"{name}: {w['kind']}/{w['metadata']['name']}"
            claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
            want = [("ServiceAccount", pod["spec"].get("serviceAccountName", "default"))]
            # (Secret, key or None for the whole Secret, optional)
            want_secrets: list[tuple[str, str | None, bool]] = []
            for v in pod["spec"].get("volumes", []):
                if "configMap" in v:
                    want.append(("ConfigMap", v["configMap"]["name"]))
                for src in v.get("projected", {}).get("sources", []):
                    if "configMap" in src:
                        want.append(("ConfigMap", src["configMap"]["name"]))
                if "secret" in v:
                    want_secrets.append((v["secret"]["secretName"], None, bool(v["secret"].get("optional"))))
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
                        want_secrets.append((ef["secretRef"]["name"], None, bool(ef["secretRef"].get("optional"))))
                env_names = {e["name"] for e in c.get("env", [])}
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {})
                    if "configMapKeyRef" in ref:
                        want.append(("ConfigMap", ref["configMapKeyRef"]["name"]))
                    if "secretKeyRef" in ref:
                        r = ref["secretKeyRef"]
                        want_secrets.append((r["name"], r["key"], bool(r.get("optional"))))
                for arg in c.get("args", []) + c.get("command", []):
                    for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
                        if var not in env_names:
                            problems.append(f"{where}/{c['name']}: $({var}) in args is not an env variable")
            for kind, ref in want:
                if ref not in have[kind] and not (kind == "ServiceAccount" and ref == "default"):
                    problems.append(f"{where}: {kind} {ref} is not in the rendering")
            for secret, key, optional in want_secrets:
                if optional:
                    continue
                source = secrets if secrets else brought
                what = "the rendering" if secrets else "the ExternalSecret examples"
                if secret not in source:
                    problems.append(f"{where}: Secret {secret} is not in {what}")
                elif key is not None and key not in source[secret]:
                    problems.append(f"{where}: Secret {secret} in {what} has no key {key}")
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


def test_only_the_dev_overlay_renders_secrets(rendered: dict[str, list[Obj]]) -> None:
    """`kubectl apply` of base or prod must never overwrite a real Secret with a placeholder: the
    placeholders live in components/dev-secrets, which only dev includes."""
    with_secrets = {name for name, objs in rendered.items() if by_kind(objs, "Secret")}
    assert with_secrets == {"overlays/dev"}, with_secrets
    assert {"trustwatch-db", "openai-api-key"} <= set(by_kind(rendered["overlays/dev"], "Secret"))


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
        if name in ("base", "overlays/two-targets"):
            assert len(cfg.targets) == 2 and all(len(s.targets) == 2 for s in cfg.schedules), name


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


def egress_allows_address(objs: list[Obj], app: str, address: str, port: int) -> bool:
    """Whether the NetworkPolicies let pods labelled app=<app> open <address>:<port> (an address
    outside the cluster: only ipBlock peers, or rules without peers, can match it)."""
    own = {"app": app}
    mine = [
        p
        for p in objs
        if p["kind"] == "NetworkPolicy"
        and "Egress" in p["spec"].get("policyTypes", [])
        and selects(p["spec"]["podSelector"], own)
    ]
    if not mine:
        return True
    ip = ipaddress.ip_address(address)
    for p in mine:
        for rule in p["spec"].get("egress", []):
            ports_ok = "ports" not in rule or any(pp.get("port") == port for pp in rule["ports"])
            peers = rule.get("to")
            peers_ok = peers is None or any(
                "ipBlock" in x
                and ip.version == ipaddress.ip_network(x["ipBlock"]["cidr"]).version
                and ip in ipaddress.ip_network(x["ipBlock"]["cidr"])
                and not any(ip in ipaddress.ip_network(e) for e in x["ipBlock"].get("except", []))
                for x in peers
            )
            if ports_ok and peers_ok:
                return True
    return False


def test_the_judge_reaches_external_https_only(rendered: dict[str, list[Obj]]) -> None:
    """Remote judges (LLM judge endpoint, embedding API, Perspective) are reachable over HTTPS; the
    cloud metadata address, private ranges and other ports are not, and no other service gains it."""
    for name, objs in rendered.items():
        assert egress_allows_address(objs, "judge", "203.0.113.10", 443), name
        assert egress_allows_address(objs, "judge", "2001:db8::10", 443), name
        for address in ("169.254.169.254", "10.0.0.12", "172.20.1.1", "192.168.1.5", "100.64.0.1", "fd00::1"):
            assert not egress_allows_address(objs, "judge", address, 443), (name, address)
        assert not egress_allows_address(objs, "judge", "203.0.113.10", 80), name
        for app in ("dispatcher", "aggregator", "scheduler", "kafka"):
            assert not egress_allows_address(objs, app, "203.0.113.10", 443), (name, app)


def test_egress_check_sees_a_missing_exception() -> None:
    """Guards the test above: a policy without the metadata exception lets the address through."""
    policy = {
        "kind": "NetworkPolicy",
        "spec": {
            "podSelector": {"matchLabels": {"app": "judge"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]}],
        },
    }
    assert egress_allows_address([policy], "judge", "169.254.169.254", 443)


def test_keda_reads_kafka_in_prod(rendered: dict[str, list[Obj]]) -> None:
    keda = ({"kubernetes.io/metadata.name": "keda"}, {"app.kubernetes.io/name": "keda-operator"})
    assert allowed(rendered["overlays/prod"], keda, "kafka", 9092)
    assert not allowed(rendered["overlays/dev"], keda, "kafka", 9092), "dev has no KEDA"


# -- the judge: image, settings, keys ---------------------------------------------------------------


def configmap(objs: list[Obj], base_name: str) -> Obj:
    """A generated ConfigMap by its name without kustomize's hash suffix."""
    (found,) = [
        o
        for o in objs
        if o["kind"] == "ConfigMap" and re.fullmatch(rf"{base_name}(-[a-z0-9]{{10}})?", o["metadata"]["name"])
    ]
    return found


def container_env(objs: list[Obj], c: Obj, brought: dict[str, set[str]] | None = None) -> dict[str, str]:
    """Every variable a container gets: env (value, or "" for a reference), and the keys of the
    ConfigMaps and Secrets of its envFrom (Secrets not in the rendering: their ExternalSecret keys)."""
    out: dict[str, str] = {}
    cms = by_kind(objs, "ConfigMap")
    secrets = by_kind(objs, "Secret")
    for ef in c.get("envFrom", []):
        if "configMapRef" in ef:
            out.update(cms[ef["configMapRef"]["name"]].get("data", {}))
        if "secretRef" in ef:
            ref = ef["secretRef"]["name"]
            keys = secret_keys(secrets[ref]) if ref in secrets else (brought or external_secrets()).get(ref, set())
            out.update({k: "" for k in keys})
    for e in c.get("env", []):
        out[e["name"]] = e.get("value", "")
    return out


def test_the_judge_runs_the_judge_image(rendered: dict[str, list[Obj]]) -> None:
    for name, objs in rendered.items():
        (c,) = pod_template(by_kind(objs, "Deployment")["judge"])["spec"]["containers"]
        image = c["image"].rsplit("/", 1)[-1].partition(":")[0]
        assert image == "trustwatch-judge", f"{name}: the judge needs the judges' dependencies ({c['image']})"
        threads = {e["name"]: e for e in c["env"]}["OMP_NUM_THREADS"]["valueFrom"]["resourceFieldRef"]
        assert threads["resource"] == "limits.cpu", f"{name}: torch threads follow the CPU limit"
    prod = pod_template(by_kind(rendered["overlays/prod"], "Deployment")["judge"])["spec"]["containers"][0]
    assert prod["image"] == "registry.example.com/trustwatch/trustwatch-judge:0.1.0", "prod: its own images: entry"


def test_judge_settings_come_from_one_configmap_shared_with_the_scheduler(rendered: dict[str, list[Obj]]) -> None:
    """The judge judges with trustwatch-judge-config; the scheduler records the judges in each run's
    manifest from its own environment, so it must read the same ConfigMap (or the record lies)."""
    from trustwatch.benchmark.evaluators.base import settings_from_env

    for name, objs in rendered.items():
        cm = configmap(objs, "trustwatch-judge-config")
        for svc in ("judge", "scheduler"):
            (c,) = pod_template(by_kind(objs, "Deployment")[svc])["spec"]["containers"]
            refs = [ef["configMapRef"]["name"] for ef in c.get("envFrom", []) if "configMapRef" in ef]
            assert cm["metadata"]["name"] in refs, f"{name}: {svc} does not read {cm['metadata']['name']}"
        settings = pytest.MonkeyPatch.context()
        with settings as mp:
            for k, v in cm["data"].items():
                mp.setenv(k, v)
            parsed = settings_from_env()  # every value parses (ints, floats)
        assert parsed.as_dict()["judge_api_key_env"] == cm["data"]["TRUSTWATCH_JUDGE_API_KEY_ENV"]
    prod = configmap(rendered["overlays/prod"], "trustwatch-judge-config")["data"]
    assert prod["TRUSTWATCH_REFUSAL_BACKEND"] == "hf" and prod["TRUSTWATCH_REFUSAL_MODEL"].startswith("/models/")
    judge = pod_template(by_kind(rendered["overlays/prod"], "Deployment")["judge"])
    mounts = {m["mountPath"]: m["name"] for m in judge["spec"]["containers"][0]["volumeMounts"]}
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in judge["spec"]["volumes"]}
    assert claims[mounts["/models"]] == "judge-models", "prod: the refusal classifier's folder is on a volume"


def test_every_key_a_judge_setting_names_reaches_the_judge(rendered: dict[str, list[Obj]]) -> None:
    """A *_KEY_ENV setting names the variable holding a remote judge's key; the judge (the one that
    calls those endpoints; the scheduler only records their names) must get that variable, here from
    the optional trustwatch-judge-keys Secret, or the key never arrives."""
    for name, objs in rendered.items():
        judge = pod_template(by_kind(objs, "Deployment")["judge"])["spec"]["containers"][0]
        env = container_env(objs, judge)
        named = {var for setting, var in env.items() if re.fullmatch(r"TRUSTWATCH_\w+_KEY_ENV", setting)}
        assert {"JUDGE_API_KEY", "PERSPECTIVE_API_KEY"} <= named, f"{name}: {named}"
        assert named <= set(env), f"{name}: the judge lacks {named - set(env)}"
        for e in judge["env"]:
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == "trustwatch-judge-keys" and ref["optional"] is True, (name, e)


# -- environment variables --------------------------------------------------------------------------

#: Variables a trustwatch container may get that are not trustwatch settings, and why.
NOT_SETTINGS = {
    "TARGET": "expanded by the kubelet into the generator's --target argument",
    "HF_HUB_OFFLINE": "huggingface_hub: never download weights at run time",
    "OMP_NUM_THREADS": "torch's CPU threads, set to the judge's CPU limit",
}


def undeclared_env(objs: list[Obj]) -> list[str]:
    """Names that trustwatch containers get (env, and the keys of envFrom ConfigMaps and Secrets) that
    are neither declared in services/trustwatch/platform/config.py, nor a key variable (a name
    TRUSTWATCH_KEY_ENV_ALLOW admits), nor in NOT_SETTINGS."""
    from trustwatch.platform import config

    allow = [p.strip() for p in config.VARIABLES["TRUSTWATCH_KEY_ENV_ALLOW"].default.split(",")]
    problems = []
    for w, pod in workloads(objs):
        for c in containers(pod):
            if not c["image"].rsplit("/", 1)[-1].startswith("trustwatch"):
                continue  # Kafka's, PostgreSQL's own variables
            for var in container_env(objs, c):
                key = not var.startswith("TRUSTWATCH_") and any(fnmatch.fnmatchcase(var, p) for p in allow)
                if var not in config.VARIABLES and not key and var not in NOT_SETTINGS:
                    problems.append(f"{w['metadata']['name']}/{c['name']}: {var}")
    return problems


def test_every_environment_variable_is_declared(
    rendered: dict[str, list[Obj]], rendered_optional: dict[str, list[Obj]]
) -> None:
    """Settings are declared once, in platform/config.py: a name in a manifest that is not there is a
    typo or a setting nobody reads."""
    problems = [
        f"{name}: {p}" for name, objs in [*rendered.items(), *rendered_optional.items()] for p in undeclared_env(objs)
    ]
    assert not problems, "variables not declared in services/trustwatch/platform/config.py:\n" + "\n".join(problems)


def test_the_declared_check_catches_a_misspelt_setting(rendered: dict[str, list[Obj]]) -> None:
    """Guards the test above: a misspelt name in a ConfigMap the judge reads is reported."""
    objs = [dict(o) for o in rendered["overlays/prod"]]
    cm = configmap(objs, "trustwatch-judge-config")
    objs[objs.index(cm)] = {**cm, "data": {**cm["data"], "TRUSTWATCH_REFUSAL_BACKNED": "hf"}}
    assert any("TRUSTWATCH_REFUSAL_BACKNED" in p for p in undeclared_env(objs))


# -- schedules: the whole benchmark -----------------------------------------------------------------


def schedule_config(objs: list[Obj], where: str) -> Any:
    """The rendered trustwatch-schedule, loaded with the scheduler's own loader from the files the
    scheduler's /etc/trustwatch volume projects (schedule and suites)."""
    from trustwatch.scheduler.schedule import load_config

    with tempfile.TemporaryDirectory() as d:
        for base_name in ("trustwatch-schedule", "trustwatch-suite"):
            for file, text in configmap(objs, base_name)["data"].items():
                (Path(d) / file).write_text(text, encoding="utf-8")
        return load_config(Path(d) / "schedule.yaml")


def test_the_default_schedules_run_the_whole_benchmark_daily(rendered: dict[str, list[Obj]]) -> None:
    """Base and prod: a schedule fires every day with every task of the registry, every item (no
    limit, no sampling): all 24 files, for every target."""
    from trustwatch.benchmark import tasks

    registry = set(tasks.known())
    assert len({t.dataset for t in tasks.known().values()}) == 24
    for name in ("base", "overlays/prod"):
        cfg = schedule_config(rendered[name], name)
        full = [
            s
            for s in cfg.schedules
            if s.sample is None
            and s.cron.split()[2:] == ["*", "*", "*"]
            and {t.task for t in s.suite.tasks} == registry
            and all(t.limit is None for t in s.suite.tasks)
        ]
        assert full, f"{name}: no daily schedule of the whole benchmark"
        assert {t.name for s in full for t in s.targets} == set(cfg.targets), f"{name}: a target without it"


def test_the_base_suite_is_the_repositorys_full_suite(rendered: dict[str, list[Obj]]) -> None:
    from trustwatch.scheduler.suite import load_suite, parse_suite

    mounted = parse_suite(yaml.safe_load(configmap(rendered["base"], "trustwatch-suite")["data"]["suite.yaml"]), "k8s")
    assert mounted == load_suite(tools.ROOT / "suites/trustllm-full.yaml")


def generator_targets(objs: list[Obj]) -> dict[str, Any]:
    """Deployment name -> the target (TargetSpec) each generator Deployment (pods labelled
    app=generator) serves: its --target $(TARGET), TARGET from the ConfigMap key it references."""
    from trustwatch.platform.targets import parse_target

    cms = by_kind(objs, "ConfigMap")
    out = {}
    for name, dep in by_kind(objs, "Deployment").items():
        pod = pod_template(dep)
        if pod["metadata"]["labels"].get("app") != "generator":
            continue
        (c,) = pod["spec"]["containers"]
        assert c["args"][:3] == ["generator", "--target", "$(TARGET)"], f"{name}: {c['args']}"
        ref = {e["name"]: e for e in c["env"]}["TARGET"]["valueFrom"]["configMapKeyRef"]
        out[name] = parse_target(cms[ref["name"]]["data"][ref["key"]])
    return out


def unserved_targets(objs: list[Obj], where: str) -> list[str]:
    """Problems of a complete stack's schedule against its generators: a scheduled target that no
    generator serves (its jobs are never consumed, the run never completes), one served twice, or a
    generator serving a target nobody schedules."""
    served = generator_targets(objs)
    cfg = schedule_config(objs, where)
    problems = []
    for t in cfg.targets.values():
        by = [dep for dep, spec in served.items() if spec.describe() == t.describe()]
        if len(by) != 1:
            problems.append(f"{where}: target {t.name} is served by {by or 'no generator'}")
    scheduled = [t.describe() for t in cfg.targets.values()]
    problems += [
        f"{where}: {dep} serves {spec.name}, which no schedule names"
        for dep, spec in served.items()
        if spec.describe() not in scheduled
    ]
    return problems


def test_every_scheduled_target_has_its_generator(rendered: dict[str, list[Obj]]) -> None:
    """A scheduled target whose jobs no generator consumes never completes: in each complete stack,
    every target of the schedule is the one exactly one generator Deployment serves (one generator
    per target; two-targets has two), and every generator serves a scheduled target."""
    problems = [p for name, objs in rendered_with_generator(rendered).items() for p in unserved_targets(objs, name)]
    assert not problems, "\n".join(problems)


def test_the_target_check_catches_a_generator_serving_the_wrong_target(rendered: dict[str, list[Obj]]) -> None:
    """Guards the test above: two-targets with its candidate generator reading the primary's target
    ConfigMap (the copy-paste slip the overlay invites) leaves `candidate` unserved."""
    objs = [dict(o) for o in rendered["overlays/two-targets"]]
    dep = by_kind(objs, "Deployment")["generator-candidate"]
    bad = yaml.safe_load(yaml.safe_dump(dep))
    (c,) = pod_template(bad)["spec"]["containers"]
    ref = {e["name"]: e for e in c["env"]}["TARGET"]["valueFrom"]["configMapKeyRef"]
    ref["name"] = configmap(objs, "trustwatch-target")["metadata"]["name"]
    objs[objs.index(dep)] = bad
    problems = unserved_targets(objs, "two-targets")
    assert any("target candidate is served by no generator" in p for p in problems), problems
    assert any("target primary is served by ['generator', 'generator-candidate']" in p for p in problems), problems


def test_the_two_targets_overlay_runs_both_targets(rendered: dict[str, list[Obj]]) -> None:
    """overlays/two-targets: the scheduler's own loader sees both targets in one daily schedule of the
    whole benchmark; each has its own generator Deployment, consumer group and job topic; the two
    generators' selectors do not overlap (Deployments sharing pods fight over them), and both are
    scraped through the generator Service."""
    from trustwatch.benchmark import tasks

    objs = rendered["overlays/two-targets"]
    cfg = schedule_config(objs, "two-targets")
    assert set(cfg.targets) == {"primary", "candidate"}
    (daily,) = cfg.schedules
    assert {t.name for t in daily.targets} == {"primary", "candidate"}
    assert {t.task for t in daily.suite.tasks} == set(tasks.known()) and daily.cron.split()[2:] == ["*", "*", "*"]
    served = generator_targets(objs)
    assert {dep: spec.name for dep, spec in served.items()} == {
        "generator": "primary",
        "generator-candidate": "candidate",
    }
    groups = {consumer_groups(spec.name)["generator"] for spec in served.values()}
    assert groups == {
        ("trustwatch-generator-primary", "trustwatch.jobs.primary"),
        ("trustwatch-generator-candidate", "trustwatch.jobs.candidate"),
    }
    deps = by_kind(objs, "Deployment")
    for dep, other in (("generator", "generator-candidate"), ("generator-candidate", "generator")):
        labels = pod_template(deps[other])["metadata"]["labels"]
        assert not selects(deps[dep]["spec"]["selector"], labels), f"{dep} selects {other}'s pods"
        assert selects({"matchLabels": by_kind(objs, "Service")["generator"]["spec"]["selector"]}, labels)
    keys = {
        dep: {e["name"]: e for e in pod_template(d)["spec"]["containers"][0]["env"]}["OPENAI_API_KEY"]["valueFrom"][
            "secretKeyRef"
        ]["name"]
        for dep, d in deps.items()
        if dep in served
    }
    assert keys == {"generator": "openai-api-key", "generator-candidate": "openai-api-key-candidate"}
    assert not by_kind(objs, "Secret"), "no Secret in a rendering meant for a real cluster"
    assert {"ServiceMonitor", "PrometheusRule"} <= {o["kind"] for o in objs}


# -- scaling: KEDA, disruption budgets --------------------------------------------------------------


def consumer_groups(target_name: str) -> dict[str, tuple[str, str]]:
    """(consumer group, topic) of the generator serving ``target_name`` and of the dispatcher, from
    the services' own workers (so a renamed group fails here, not silently in KEDA)."""
    from prometheus_client import CollectorRegistry

    from trustwatch.generator.service import generator_worker
    from trustwatch.judge.dispatcher import dispatcher_worker
    from trustwatch.platform.bus.base import Topics
    from trustwatch.platform.bus.memory import MemoryBus
    from trustwatch.platform.telemetry.metrics import ServiceMetrics

    topics, metrics = Topics(), ServiceMetrics(CollectorRegistry())
    # No back-end or evaluator is called: only the workers' consumer groups and topics are read.
    gen = generator_worker(
        bus=MemoryBus(),
        topics=topics,
        target=target_name,
        backend_name="vllm",
        backend=None,  # type: ignore[arg-type]  # the wiring under test never touches it
        metrics=metrics,
        max_batch=1,
        max_reply_chars=0,
    )
    disp = dispatcher_worker(bus=MemoryBus(), topics=topics, client=None, metrics=metrics)  # type: ignore[arg-type]  # not called here
    return {"generator": (gen.group_id, *gen.topics), "dispatcher": (disp.group_id, *disp.topics)}


def test_keda_scales_each_consumer_on_its_own_lag(rendered: dict[str, list[Obj]]) -> None:
    from trustwatch.platform.targets import parse_target

    scaled = {name: objs for name, objs in rendered.items() if by_kind(objs, "ScaledObject")}
    assert set(scaled) == {"overlays/prod"}
    for name, objs in scaled.items():
        deployments = by_kind(objs, "Deployment")
        (namespace,) = by_kind(objs, "Namespace")
        target = parse_target(configmap(objs, "trustwatch-target")["data"]["target"])
        groups = consumer_groups(target.name)
        groups["judge"] = groups["dispatcher"]  # gRPC: scaled on the work waiting for the dispatcher
        partitions = int(
            {
                e["name"]: e["value"]
                for e in pod_template(by_kind(objs, "StatefulSet")["kafka"])["spec"]["containers"][0]["env"]
                if "value" in e
            }["KAFKA_NUM_PARTITIONS"]
        )
        objects = by_kind(objs, "ScaledObject")
        assert set(objects) == {"generator", "dispatcher", "judge"}
        for so_name, so in objects.items():
            spec = so["spec"]
            dep = deployments[spec["scaleTargetRef"]["name"]]
            assert "replicas" not in dep["spec"], f"{name}: {so_name}: KEDA owns replicas; apply would reset them"
            assert spec["maxReplicaCount"] <= partitions, f"{name}: {so_name}: more consumers than partitions"
            (kafka,) = [t for t in spec["triggers"] if t["type"] == "kafka"]
            md = kafka["metadata"]
            assert (md["consumerGroup"], md["topic"]) == groups[so_name], f"{name}: {so_name} reads another group"
            assert md["bootstrapServers"] == f"kafka.{namespace}.svc:9092", f"{name}: {so_name}"
            assert md.get("offsetResetPolicy") == "earliest", "as the services' consumers"
        assert objects["generator"]["spec"]["minReplicaCount"] == 0, "no GPU held between runs"
        assert objects["judge"]["spec"]["minReplicaCount"] >= 2, "the judge's PodDisruptionBudget keeps one up"


def test_every_replicated_service_has_a_disruption_budget(rendered: dict[str, list[Obj]]) -> None:
    for name, objs in rendered.items():
        pdbs = list(by_kind(objs, "PodDisruptionBudget").values())
        scaled = {so["spec"]["scaleTargetRef"]["name"]: so for so in by_kind(objs, "ScaledObject").values()}
        for dep_name, dep in by_kind(objs, "Deployment").items():
            most = max(
                dep["spec"].get("replicas", 1), scaled.get(dep_name, {}).get("spec", {}).get("maxReplicaCount", 1)
            )
            consumer = dep_name in ("generator", "dispatcher", "judge")  # scale out by design
            if most > 1 or consumer:
                labels = pod_template(dep)["metadata"]["labels"]
                assert any(selects(p["spec"]["selector"], labels) for p in pdbs), f"{name}: {dep_name} has no PDB"


# -- dashboards -------------------------------------------------------------------------------------


def test_dashboard_copies_are_what_the_generator_writes() -> None:
    """kustomize reads no file outside the component, so the component holds copies: `make dashboards`
    writes them with monitoring/'s, and they must never drift from the generator."""
    from trustwatch.platform.telemetry import dashboards

    component = K8S / "components/grafana-dashboards"
    assert {f.name for f in component.glob("*.json")} == set(dashboards.render()), "run: make dashboards"
    for file, text in dashboards.render().items():
        assert (component / file).read_text(encoding="utf-8") == text, f"{file} differs; run: make dashboards"


def test_grafana_sidecar_gets_the_dashboards(rendered: dict[str, list[Obj]]) -> None:
    from trustwatch.platform.telemetry import dashboards

    cm = by_kind(rendered["overlays/prod"], "ConfigMap")["trustwatch-dashboards"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["data"] == dashboards.render()
    kustomization = yaml.safe_load((K8S / "components/grafana-dashboards/kustomization.yaml").read_text())
    files = kustomization["configMapGenerator"][0]["files"]
    assert sorted(files) == sorted(dashboards.render()), "the component lists every dashboard"


# -- production secrets -----------------------------------------------------------------------------


@pytest.mark.parametrize("component", sorted(OPTIONAL_COMPONENTS))
def test_external_secrets_bring_every_secret_the_overlay_needs(
    rendered: dict[str, list[Obj]], rendered_optional: dict[str, list[Obj]], component: str
) -> None:
    """Prod and two-targets render no Secret; the ExternalSecret examples, added to the overlay as
    documented, provide each Secret and key its pods read without `optional`."""
    overlay = OPTIONAL_COMPONENTS[component][0]
    objs = rendered_optional[component]
    brought = {
        o["spec"]["target"]["name"]: {d["secretKey"] for d in o["spec"]["data"]}
        for o in objs
        if o["kind"] == "ExternalSecret"
    }
    assert not by_kind(objs, "Secret")
    needed: set[tuple[str, str | None]] = set()
    for _, pod in workloads(rendered[overlay]):
        for c in containers(pod):
            for ef in c.get("envFrom", []):
                if "secretRef" in ef and not ef["secretRef"].get("optional"):
                    needed.add((ef["secretRef"]["name"], None))
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    needed.add((ref["name"], ref["key"]))
    assert ("trustwatch-db", "TRUSTWATCH_DB_URL") in needed, "the aggregator and the scheduler read it"
    for secret, key in needed:
        assert secret in brought and (key is None or key in brought[secret]), (overlay, secret, key)


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
