#!/usr/bin/env python3
"""Checks deploy/kubernetes and compose.yaml offline, without a cluster or a container.

1. Renders each kustomization (`kubectl kustomize` when kubectl is installed, else a small
   renderer for the subset used here: `resources` and `namespace`) and validates every object
   against the Kubernetes API's JSON schemas (the kubernetes-validate package bundles them),
   strictly: an unknown or misspelt field is an error. The ServiceMonitor (a CRD) is checked by
   hand.
2. Checks that the manifests match what Relay serves: probe and scrape paths are routes in
   Relay's OpenAPI document (`relay openapi`, the same document GET /openapi.json serves),
   ports agree with RELAY_LISTEN, every environment variable is one Relay documents, the
   grace period covers Relay's drain, and the pod runs as the image's user, non-root, on a
   read-only root file system with every capability dropped.

Usage: check-deploy-manifests.py --openapi FILE   (FILE: the output of `relay openapi`)
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K8S = os.path.join(ROOT, "deploy", "kubernetes")
KUBERNETES_VERSION = "1.31.0"  # the oldest minor still supported upstream when this was written
# Namespaced kinds among those shipped (the fallback renderer sets their namespace).
CLUSTER_SCOPED = {"Namespace"}

errors = []


def fail(msg):
    errors.append(msg)


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def render_fallback(directory):
    """kustomize's `resources` (files and directories) and `namespace`, nothing else."""
    with open(os.path.join(directory, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    unsupported = set(k) - {"apiVersion", "kind", "namespace", "resources"}
    if unsupported:
        sys.exit(f"{directory}: the fallback renderer does not know {sorted(unsupported)}; install kubectl")
    docs = []
    for res in k.get("resources", []):
        path = os.path.normpath(os.path.join(directory, res))
        docs += render_fallback(path) if os.path.isdir(path) else load_all(path)
    if "namespace" in k:
        for d in docs:
            if d["kind"] not in CLUSTER_SCOPED:
                d.setdefault("metadata", {})["namespace"] = k["namespace"]
    return docs


def render(directory):
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", directory], check=True, capture_output=True, text=True)
        return [d for d in yaml.safe_load_all(out.stdout) if d]
    return render_fallback(directory)


def validate_schema(doc, where):
    import kubernetes_validate

    name = f"{where}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
        return  # a CRD: checked in check_service_monitor
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        fail(f"{name}: {e.message} at {'.'.join(str(p) for p in e.path)}")
    except Exception as e:  # an unknown kind or version
        fail(f"{name}: {e}")


def env_names_documented():
    """Environment variables Relay documents (README.md and docs/OPERATIONS.md)."""
    text = ""
    for p in ("README.md", os.path.join("docs", "OPERATIONS.md")):
        with open(os.path.join(ROOT, p)) as f:
            text += f.read()
    return set(re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", text))


def image_user():
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        users = re.findall(r"^USER\s+(\d+)(?::(\d+))?\s*$", f.read(), re.M)
    if not users:
        sys.exit("Dockerfile: no numeric USER")
    uid, gid = users[-1]
    return int(uid), int(gid or uid)


def named_port(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    fail(f"container {container['name']}: no port named {port!r}")
    return None


def check_relay(docs, routes, documented):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        fail(f"expected one Deployment, found {len(deployments)}")
        return
    dep = deployments[0]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    if spec.get("replicas") != 3:
        fail(f"Deployment replicas: {spec.get('replicas')}, expected 3")
    (c,) = [c for c in pod["containers"] if c["name"] == "relay"]
    env = {e["name"]: e for e in c.get("env", [])}

    # Ports: RELAY_LISTEN's port is the container port the probes and the Service use.
    listen = env.get("RELAY_LISTEN", {}).get("value", "0.0.0.0:8080")
    host, _, port = listen.rpartition(":")
    if host not in ("0.0.0.0", "[::]"):
        fail(f"RELAY_LISTEN {listen}: must listen on every address inside the pod")
    if [p["containerPort"] for p in c["ports"]] != [int(port)]:
        fail(f"container ports {c['ports']} do not match RELAY_LISTEN {listen}")

    # Probes: paths Relay serves, on the port it listens on.
    expected = {"livenessProbe": "/health", "readinessProbe": "/ready", "startupProbe": "/health"}
    for probe, path in expected.items():
        p = c.get(probe)
        if not p:
            fail(f"container relay: no {probe}")
            continue
        got = p["httpGet"]["path"]
        if got != path:
            fail(f"{probe} probes {got}, expected {path}")
        if got not in routes:
            fail(f"{probe} path {got} is not a route of Relay")
        if named_port(c, p["httpGet"]["port"]) != int(port):
            fail(f"{probe} port does not reach RELAY_LISTEN's port {port}")

    # Environment: every name is one Relay documents; secrets come from a Secret.
    for name, e in env.items():
        if name not in documented:
            fail(f"env {name} is not documented as a Relay setting (README.md, docs/OPERATIONS.md)")
        if ("KEY" in name or "SECRET" in name or name.endswith("_URL") and name != "RELAY_PUBLIC_BASE_URL") and "valueFrom" not in e:
            fail(f"env {name} holds a secret: it must come from a Secret (valueFrom)")
    for required in ("DATABASE_URL", "OAUTH_ENCRYPTION_KEY"):
        if required not in env:
            fail(f"env {required} missing")

    # Security: non-root as the image's user, read-only root file system, no capabilities.
    uid, gid = image_user()
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    if psc.get("runAsUser", csc.get("runAsUser")) != uid or psc.get("runAsGroup", csc.get("runAsGroup")) != gid:
        fail(f"pod must run as the image's user {uid}:{gid}")
    if not (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
        fail("runAsNonRoot is not set")
    if csc.get("readOnlyRootFilesystem") is not True:
        fail("readOnlyRootFilesystem is not true")
    if csc.get("allowPrivilegeEscalation") is not False:
        fail("allowPrivilegeEscalation is not false")
    if csc.get("capabilities", {}).get("drop") != ["ALL"]:
        fail("capabilities are not all dropped")
    if "resources" not in c or "requests" not in c["resources"]:
        fail("container relay: no resource requests")

    # Graceful shutdown: the grace period covers preStop + the server's drain + the refresher's.
    config = {}
    for cm in by_kind.get("ConfigMap", []):
        if "relay.toml" in cm.get("data", {}):
            config = tomllib.loads(cm["data"]["relay.toml"])
    server_grace = config.get("server", {}).get("shutdown_grace_secs", 30)
    refresher_grace = config.get("refresher", {}).get("shutdown_grace_secs", 10)
    pre_stop = 0
    cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if cmd[:1] == ["sleep"]:
        pre_stop = int(cmd[1])
    need = pre_stop + server_grace + refresher_grace
    if pod.get("terminationGracePeriodSeconds", 30) < need:
        fail(f"terminationGracePeriodSeconds {pod.get('terminationGracePeriodSeconds', 30)} < preStop {pre_stop} + drain {server_grace} + refresher {refresher_grace}")

    # The config file is mounted where RELAY_CONFIG says.
    cfg = env.get("RELAY_CONFIG", {}).get("value")
    if cfg:
        mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
        if os.path.dirname(cfg) not in mounts:
            fail(f"RELAY_CONFIG {cfg} is not under a mounted volume {mounts}")

    # Service and PodDisruptionBudget select the pods; the Service targets the http port.
    for kind in ("Service", "PodDisruptionBudget"):
        objs = by_kind.get(kind, [])
        if not objs:
            fail(f"no {kind}")
        for o in objs:
            sel = o["spec"]["selector"]
            sel = sel.get("matchLabels", sel) if kind == "PodDisruptionBudget" else sel
            if any(labels.get(k) != v for k, v in sel.items()):
                fail(f"{kind}/{o['metadata']['name']} selector {sel} does not select the pods {labels}")
    for svc in by_kind.get("Service", []):
        for p in svc["spec"]["ports"]:
            if named_port(c, p["targetPort"]) != int(port):
                fail(f"Service port {p} does not reach RELAY_LISTEN's port {port}")
    return by_kind


def check_service_monitor(by_kind, routes):
    monitors = by_kind.get("ServiceMonitor", [])
    if not monitors:
        fail("monitoring: no ServiceMonitor")
    svc_ports = {p["name"] for s in by_kind.get("Service", []) for p in s["spec"]["ports"]}
    svc_labels = [s["metadata"].get("labels", {}) for s in by_kind.get("Service", [])]
    for m in monitors:
        spec = m.get("spec", {})
        unknown = set(spec) - {"selector", "endpoints", "namespaceSelector", "jobLabel"}
        if unknown:
            fail(f"ServiceMonitor: unexpected fields {sorted(unknown)}")
        sel = spec.get("selector", {}).get("matchLabels", {})
        if not any(all(l.get(k) == v for k, v in sel.items()) for l in svc_labels):
            fail(f"ServiceMonitor selector {sel} selects no Service")
        for ep in spec.get("endpoints", []):
            if ep.get("port") not in svc_ports:
                fail(f"ServiceMonitor endpoint port {ep.get('port')} is not a Service port {svc_ports}")
            if ep.get("path", "/metrics") not in routes:
                fail(f"ServiceMonitor path {ep.get('path')} is not a route of Relay")


def check_compose(routes, documented):
    with open(os.path.join(ROOT, "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    relays = {n: s for n, s in compose["services"].items() if n.startswith("relay")}
    if len(relays) < 2:
        fail("compose.yaml: fewer than two Relay services")
    for name, s in relays.items():
        if s.get("read_only") is not True:
            fail(f"compose.yaml {name}: not read_only")
        for var in s.get("environment", {}):
            if var not in documented:
                fail(f"compose.yaml {name}: env {var} is not documented as a Relay setting")
        for p in s.get("ports", []):
            if not str(p).endswith(":8080"):
                fail(f"compose.yaml {name}: port {p} does not reach the image's 8080")
    with open(os.path.join(ROOT, "deploy", "compose", "prometheus.yml")) as f:
        prom = yaml.safe_load(f)
    for job in prom["scrape_configs"]:
        if job.get("metrics_path", "/metrics") not in routes:
            fail(f"prometheus.yml: {job['job_name']} scrapes {job.get('metrics_path')}, not a route of Relay")
        for sc in job.get("static_configs", []):
            for t in sc["targets"]:
                host, _, port = t.rpartition(":")
                if host not in relays or port != "8080":
                    fail(f"prometheus.yml: target {t} is not a Relay service on 8080")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--openapi", required=True, help="the output of `relay openapi`")
    args = ap.parse_args()
    with open(args.openapi) as f:
        routes = set(json.load(f)["paths"])
    documented = env_names_documented()

    renderer = "kubectl kustomize" if shutil.which("kubectl") else "the fallback renderer"
    base = render(os.path.join(K8S, "base"))
    monitoring = render(os.path.join(K8S, "monitoring"))
    extra = load_all(os.path.join(K8S, "jobs", "migrate.yaml")) + load_all(os.path.join(K8S, "secret.example.yaml"))
    for d in base:
        validate_schema(d, "base")
    for d in monitoring:
        validate_schema(d, "monitoring")
    for d in extra:
        validate_schema(d, "extra")
    by_kind = check_relay(base, routes, documented)
    by_kind_mon = check_relay(monitoring, routes, documented)
    check_service_monitor(by_kind_mon or {}, routes)
    # The migration Job uses the image's user and the Secret's database URL, nothing else.
    for job in (d for d in extra if d["kind"] == "Job"):
        (c,) = job["spec"]["template"]["spec"]["containers"]
        if c.get("args") != ["migrate"]:
            fail(f"Job {job['metadata']['name']}: args {c.get('args')}, expected ['migrate']")
        if c.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
            fail("migration Job: readOnlyRootFilesystem is not true")
    # Every Secret key the manifests require is in the example Secret.
    example = next(d for d in extra if d["kind"] == "Secret")
    for d in base + extra:
        if d["kind"] not in ("Deployment", "Job"):
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional") and ref["key"] not in example.get("stringData", {}):
                    fail(f"{d['kind']}: Secret key {ref['key']} is not in secret.example.yaml")
    check_compose(routes, documented)

    if errors:
        print(f"deploy manifests: {len(errors)} problems", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        sys.exit(1)
    total = len(base) + len(monitoring) + len(extra)
    print(f"deploy manifests: {total} objects valid against Kubernetes {KUBERNETES_VERSION} "
          f"(rendered with {renderer}); probes, ports, env names and metrics match Relay")


if __name__ == "__main__":
    main()
