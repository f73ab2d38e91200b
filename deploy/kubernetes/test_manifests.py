#!/usr/bin/env python3
"""Checks the Kubernetes manifests in deploy/kubernetes and the PrometheusRule generator. Plain python3
with PyYAML; promtool, when installed, checks the generated rules.

- Every manifest parses and has the expected kinds; everything of TaskWatch lives in the namespace.
- The DaemonSet: hostPID, the hostPath /run/taskwatch, the socket path and mode in its args, probes on
  /-/ready and /-/healthy through the port named http-metrics (10101), resources, a non-root,
  read-only, capability-free container; the socket group it runs with is the example app's
  supplemental group.
- The DaemonSet's priorityClassName is our PriorityClass (priorityclass.yaml): cluster-scoped, not the
  default, above application pods and below the system-* classes; deploy/README.md applies it before
  the DaemonSet, and applies every manifest but the example app.
- Service and PodMonitor select the DaemonSet's pods and use port http-metrics; the PodMonitor's
  jobLabel makes job="taskwatch".
- The PodMonitor's target labels, worked out by running its relabelings after the ones the Prometheus
  Operator puts first (namespace, container, pod, job, endpoint) on discovered daemon pods: exactly
  job, instance and node, with instance the node's name, so a rollout (new pod, new IP, same node)
  keeps every series and two nodes never share one; the DaemonSet rolls out without a surge.
- The example app mounts the same hostPath, read-only, and sets TASKWATCH_SOCKET to the daemon's
  socket; the comments say that a hostPath keeps the app's namespace out of Pod Security's baseline
  and restricted levels, and no longer claim the privileged level is needed only for the daemon.
- generate-prometheusrule.py produces a PrometheusRule whose groups equal prometheus/rules.yml,
  prometheus/alerts.yml and prometheus/alerts-kubernetes.yml, which promtool accepts, and the generated
  file is not committed. The Kubernetes-only alerts name the DaemonSet of daemonset.yaml; alerts.yml
  reads no kube-state-metrics series.
- The image (read, never built: no docker needed): deploy/container/Dockerfile builds in release the
  products the DaemonSet and the example app run, on a swift builder and a slim runtime of the same
  Debian release with libmicrohttpd; its entrypoint, user, exposed port, socket path and mode and
  socket volume are the DaemonSet's; the manifests name the image `make image` tags, whose tag is the
  daemon's version; .dockerignore keeps build trees out but not what the Dockerfile copies.

Prints "N passed, N failed" and exits non-zero on any failure.
"""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SOCKET_DIR = "/run/taskwatch"
SOCKET = SOCKET_DIR + "/ingest.sock"
RULE_FILES = ("prometheus/rules.yml", "prometheus/alerts.yml", "prometheus/alerts-kubernetes.yml")

passed = 0
failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {what}")
    return ok


def load(name):
    with open(os.path.join(HERE, name)) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    check(len(docs) == 1, f"{name}: one document")
    return docs[0]


def flag(args, name):
    for arg in args:
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def host_path_volume(pod_spec, path):
    for volume in pod_spec.get("volumes", []):
        if volume.get("hostPath", {}).get("path") == path:
            return volume["name"]
    return None


def mounts(container, volume, path):
    return any(m.get("name") == volume and m.get("mountPath") == path for m in container.get("volumeMounts", []))


def relabel(labels, configs):
    """Applies Prometheus relabel configs (written as in a PodMonitor: sourceLabels, targetLabel, ...)
    to a dict of labels, as Prometheus does: regexes fully anchored, an empty result removes the
    target label. Returns the new labels, or None when a keep or drop removes the target."""
    labels = dict(labels)
    for config in configs:
        action = config.get("action", "replace").lower()
        regex = re.compile(f"^(?:{config.get('regex', '(.*)')})$")
        value = config.get("separator", ";").join(labels.get(name, "") for name in config.get("sourceLabels", []))
        if action == "replace":
            match = regex.match(value)
            if match:
                template = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", config.get("replacement", "$1"))
                result = match.expand(template)
                if result:
                    labels[config["targetLabel"]] = result
                else:
                    labels.pop(config["targetLabel"], None)
        elif action == "labeldrop":
            labels = {k: v for k, v in labels.items() if not regex.match(k)}
        elif action == "labelkeep":
            labels = {k: v for k, v in labels.items() if regex.match(k)}
        elif action == "keep":
            if not regex.match(value):
                return None
        elif action == "drop":
            if regex.match(value):
                return None
        else:
            raise ValueError(f"relabel action {action} is not modelled here")
    return labels


def pod_monitor_target(pm, endpoint, pod_labels, pod, node, ip, port, container):
    """The labels Prometheus gives one discovered pod port of a PodMonitor endpoint: what Kubernetes
    service discovery provides, then the relabelings the Prometheus Operator generates before the
    endpoint's own (its generatePodMonitorConfig: namespace, container, pod, job, endpoint), then the
    endpoint's relabelings, then instance from __address__ if still unset, then no __ labels."""
    name = pm["metadata"]["name"]
    namespace = pm["metadata"]["namespace"]
    discovered = {
        "__address__": f"{ip}:{port}",
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": pod,
        "__meta_kubernetes_pod_node_name": node,
        "__meta_kubernetes_pod_ip": ip,
        "__meta_kubernetes_pod_container_name": container,
        "__meta_kubernetes_pod_container_port_name": endpoint.get("port", ""),
        "__meta_kubernetes_pod_container_port_number": str(port),
        "job": f"podMonitor/{namespace}/{name}/0",
    }
    for key, value in pod_labels.items():
        discovered["__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)] = value
    operator = [
        {"sourceLabels": ["__meta_kubernetes_pod_container_port_name"], "regex": endpoint.get("port", ""), "action": "keep"},
        {"sourceLabels": ["__meta_kubernetes_namespace"], "targetLabel": "namespace"},
        {"sourceLabels": ["__meta_kubernetes_pod_container_name"], "targetLabel": "container"},
        {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod"},
        {"targetLabel": "job", "replacement": f"{namespace}/{name}"},
    ]
    if pm["spec"].get("jobLabel"):
        source = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", pm["spec"]["jobLabel"])
        operator.append({"sourceLabels": [source], "targetLabel": "job", "regex": "(.+)", "replacement": "${1}"})
    operator.append({"targetLabel": "endpoint", "replacement": endpoint.get("port", "")})
    labels = relabel(discovered, operator + endpoint.get("relabelings", []))
    if labels is None:
        return None
    labels.setdefault("instance", labels["__address__"])
    return {k: v for k, v in labels.items() if not k.startswith("__")}


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def read(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return f.read()


def dockerfile(text):
    """Global ARG defaults and the stages of a Dockerfile: each stage a dict with "from", "name" and
    "instructions", a list of (KEYWORD, arguments) with continuation lines joined and comments dropped."""
    instructions, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        instructions.append(current + line)
        current = ""
    args, stages = {}, []
    for instruction in instructions:
        keyword, _, rest = instruction.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            stages.append({"from": image, "name": name, "instructions": []})
        elif stages:
            stages[-1]["instructions"].append((keyword, rest))
        elif keyword == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            args[key] = value
    return args, stages


def exec_form(stage, keyword):
    """The JSON (exec form) arguments of the stage's last `keyword` instruction, or None."""
    values = [rest for key, rest in stage["instructions"] if key == keyword]
    try:
        return json.loads(values[-1]) if values else None
    except json.JSONDecodeError:
        return None


# The system-* classes: user-defined ones may not reach them (at most 1,000,000,000).
SYSTEM_CLUSTER_CRITICAL = 2000000000
USER_PRIORITY_MAX = 1000000000


def check_priority(daemonset, priority_class, manifests):
    """The DaemonSet runs at our own PriorityClass: above application pods (which default to 0), so a
    full node preempts one for the daemon instead of leaving it Pending, and below the system-*
    classes, which are for what a node or the cluster cannot run without; the class is cluster-scoped,
    never the cluster's default, and deploy/README.md applies it before the DaemonSet (a pod naming a
    class that does not exist is refused). Every manifest but the example app is applied there."""
    spec = daemonset["spec"]["template"]["spec"]
    name = priority_class["metadata"]["name"]
    check(priority_class.get("apiVersion") == "scheduling.k8s.io/v1", "PriorityClass is scheduling.k8s.io/v1")
    check("namespace" not in priority_class["metadata"], "PriorityClass has no namespace (it is cluster-scoped)")
    check(spec.get("priorityClassName") == name, f"DaemonSet priorityClassName is {name}: {spec.get('priorityClassName')}")
    check(not spec.get("priorityClassName", "").startswith("system-"),
          "DaemonSet is not system-node-critical or system-cluster-critical (a monitoring agent is neither)")
    value = priority_class.get("value")
    check(isinstance(value, int) and 0 < value <= USER_PRIORITY_MAX < SYSTEM_CLUSTER_CRITICAL,
          f"PriorityClass value {value} is above the default 0 and at most {USER_PRIORITY_MAX}, below the system-* classes")
    check(priority_class.get("globalDefault", False) is False, "PriorityClass is not the cluster's globalDefault")
    check(priority_class.get("preemptionPolicy", "PreemptLowerPriority") == "PreemptLowerPriority",
          "PriorityClass may preempt lower priorities (a daemon pod cannot go to another node)")
    check(bool(priority_class.get("description")), "PriorityClass has a description")
    file_of = {doc.get("kind"): name for name, doc in manifests.items()}
    readme = read("deploy/README.md")
    applied = [m.group(1) for m in re.finditer(r"-f deploy/kubernetes/([\w.-]+\.yaml)", readme)]
    for manifest in sorted(set(manifests) - {"example-app.yaml"}):
        check(manifest in applied, f"deploy/README.md applies {manifest}")
    pc_file, ds_file = file_of.get("PriorityClass"), file_of.get("DaemonSet")
    check(pc_file in applied and ds_file in applied and applied.index(pc_file) < applied.index(ds_file),
          f"deploy/README.md applies {pc_file} before {ds_file}")


def check_kubernetes_alerts(daemonset, groups):
    """The Kubernetes-only alerts (prometheus/alerts-kubernetes.yml) are in the PrometheusRule and name
    the DaemonSet of daemonset.yaml in every kube-state-metrics selector; alerts.yml stays
    platform-neutral (no kube-state-metrics series)."""
    name = daemonset["metadata"]["name"]
    with open(os.path.join(ROOT, "prometheus", "alerts-kubernetes.yml")) as f:
        kube_groups = yaml.safe_load(f)["groups"]
    kube_alerts = [r for g in kube_groups for r in g["rules"] if "alert" in r]
    check(any(r["alert"] == "TaskWatchNodesWithoutDaemon" for r in kube_alerts),
          "alerts-kubernetes.yml has TaskWatchNodesWithoutDaemon (a node that should run the daemon does not)")
    generated_names = {g["name"] for g in groups}
    check(all(g["name"] in generated_names for g in kube_groups), "the PrometheusRule holds the Kubernetes-only groups")
    check(all(g["name"].endswith(".kubernetes") for g in kube_groups), "the Kubernetes-only groups are named *.kubernetes")
    for rule in kube_alerts:
        selectors = re.findall(r"kube_daemonset_\w+\{([^}]*)\}", rule["expr"])
        check(bool(selectors) and all(f'daemonset="{name}"' in s for s in selectors),
              f"{rule['alert']}: every kube_daemonset_* selector names daemonset=\"{name}\" (daemonset.yaml)")
    with open(os.path.join(ROOT, "prometheus", "alerts.yml")) as f:
        check("kube_" not in "".join(r["expr"] for g in yaml.safe_load(f)["groups"] for r in g["rules"]),
              "alerts.yml reads no kube-state-metrics series (it is for systemd hosts too)")


def check_image(daemonset, app):
    """The Dockerfile builds what the manifests run, the way they run it; read, never built."""
    rel = "deploy/container/Dockerfile"
    if not check(os.path.isfile(os.path.join(ROOT, rel)), f"{rel} exists"):
        return
    _, stages = dockerfile(read(rel))
    if not check(len(stages) >= 2, f"{rel} is multi-stage"):
        return
    builder, runtime = stages[0], stages[-1]
    build_text = " ".join(rest for _, rest in builder["instructions"])
    spec = daemonset["spec"]["template"]["spec"]
    daemon = [c for c in spec["containers"] if c["name"] == "taskwatchd"][0]
    sc = daemon.get("securityContext", {})
    app_container = app["spec"]["containers"][0]

    # Builder: a Swift image at least as new as the manifest's tools version, building both products.
    tools = re.search(r"swift-tools-version:\s*(\d+)\.(\d+)", read("Package.swift"))
    swift = re.match(r"swift:(\d+)\.(\d+)", builder["from"])
    check(bool(tools and swift) and tuple(map(int, swift.groups())) >= tuple(map(int, tools.groups())),
          f"builder {builder['from']} is a Swift image at least swift-tools-version {tools and tools.group(0)}")
    check("libmicrohttpd-dev" in build_text, "builder installs libmicrohttpd-dev")
    for who, command in (("DaemonSet", daemon.get("command", [])), ("example app", app_container.get("command", []))):
        product = command[0] if command else None
        built = re.search(rf"swift build -c release[^&;]*--product {product}\b", build_text) if product else None
        check(built is not None, f"the image builds {product}, which the {who} runs, in release")
        check(product and f"/usr/local/bin/{product}" in build_text, f"{product} is installed on the PATH")
    check(any(key == "COPY" and rest.startswith(f"--from={builder['name']} ") for key, rest in runtime["instructions"]),
          "the runtime stage copies from the builder")

    # Runtime: slim, the builder's Debian release (the binaries link its glibc), with libmicrohttpd.
    release = builder["from"].rsplit("-", 1)[-1]
    check(re.fullmatch(rf"(debian|ubuntu):{re.escape(release)}-slim", runtime["from"]) is not None,
          f"runtime {runtime['from']} is the slim image of the builder's release {release}")
    runtime_text = " ".join(rest for _, rest in runtime["instructions"])
    check("libmicrohttpd12" in runtime_text, "runtime installs libmicrohttpd12")

    # Run as the DaemonSet runs it.
    entrypoint, cmd = exec_form(runtime, "ENTRYPOINT"), exec_form(runtime, "CMD") or []
    check(entrypoint is not None and entrypoint == daemon.get("command"),
          f"ENTRYPOINT {entrypoint} is the DaemonSet's command {daemon.get('command')}")
    users = [rest for key, rest in runtime["instructions"] if key == "USER"]
    uid_gid = f"{sc.get('runAsUser')}:{sc.get('runAsGroup')}"
    check(users[-1:] == [uid_gid], f"USER {users[-1:]} is the DaemonSet's {uid_gid}")
    port = [p for p in daemon.get("ports", []) if p["name"] == "http-metrics"][0]["containerPort"]
    exposed = [rest for key, rest in runtime["instructions"] if key == "EXPOSE"]
    check(any(str(port) in rest.replace("/tcp", "").split() for rest in exposed), f"EXPOSE {port}")
    args = daemon.get("args", [])
    for name in ("--web.listen-address", "--ingest.socket", "--ingest.socket-mode"):
        check(flag(cmd, name) == flag(args, name), f"CMD {name}={flag(cmd, name)} is the DaemonSet's {flag(args, name)}")
    volumes = [rest for key, rest in runtime["instructions"] if key == "VOLUME"]
    check(any(SOCKET_DIR in rest for rest in volumes), f"VOLUME {SOCKET_DIR}, where the hostPath is mounted")
    check(re.search(rf"install -d -o {sc.get('runAsUser')} -g {sc.get('runAsGroup')} [^&]*{SOCKET_DIR}\b", runtime_text)
          is not None, f"the image makes {SOCKET_DIR} the daemon's, for runs without the hostPath")

    # Names: the manifests run the image `make image` tags, and the tag is the daemon's version.
    makefile = read("Makefile")
    image = re.search(r"^IMAGE \?= (\S+):\$\(VERSION\)$", makefile, re.M)
    version = re.search(r'static let version = "([^"]+)"', read("Sources/TaskWatchDaemon/Version.swift"))
    expected = f"{image.group(1)}:{version.group(1)}" if image and version else None
    check(re.search(r"^image:", makefile, re.M) is not None and "deploy/container/Dockerfile" in makefile,
          "make image builds deploy/container/Dockerfile")
    check(expected is not None and daemon.get("image") == expected, f"DaemonSet image {daemon.get('image')} is {expected}")
    check(app_container.get("image") == expected, f"example app image {app_container.get('image')} is {expected}")
    check('revision = "dev"' in read("Sources/TaskWatchDaemon/Version.swift") and 's/revision = \\"dev\\"/' in build_text,
          "the build stamps the revision where Version.swift has it")
    ignored = {line.strip() for line in read(".dockerignore").splitlines() if line.strip() and not line.startswith("#")}
    copied = {rest.split()[0].rstrip("/") for key, rest in builder["instructions"] if key == "COPY"}
    check(".build" in ignored and not (ignored & copied), f".dockerignore keeps .build out and {sorted(copied)} in")


def main():
    manifests = {}
    for name in sorted(os.listdir(HERE)):
        if name.endswith(".yaml") and name != "prometheusrule.yaml":
            try:
                manifests[name] = load(name)
                check(True, f"{name} parses")
            except yaml.YAMLError as error:
                check(False, f"{name} parses: {error}")
    kinds = {doc.get("kind"): doc for doc in manifests.values() if doc.get("kind") != "Service"}
    services = {doc["metadata"]["name"]: doc for doc in manifests.values() if doc.get("kind") == "Service"}
    if "taskwatchd" in services:
        kinds["Service"] = services["taskwatchd"]
    for kind in ("Namespace", "PriorityClass", "DaemonSet", "Service", "PodMonitor", "Pod"):
        check(kind in kinds, f"a {kind} manifest")
    if failed:
        print(f"{passed} passed, {failed} failed")
        return 1
    namespace = kinds["Namespace"]["metadata"]["name"]
    for kind in ("DaemonSet", "Service", "PodMonitor"):
        check(kinds[kind]["metadata"].get("namespace") == namespace, f"{kind} in namespace {namespace}")
    check("taskwatchd-local" in services, "a node-local Service (service-local.yaml)")
    if "taskwatchd-local" not in services:
        print(f"{passed} passed, {failed} failed")
        return 1
    local = services["taskwatchd-local"]
    check(local["metadata"].get("namespace") == namespace, f"the node-local Service in namespace {namespace}")

    ds = kinds["DaemonSet"]
    pod = ds["spec"]["template"]
    spec = pod["spec"]
    pod_labels = pod["metadata"]["labels"]
    check(matches(ds["spec"]["selector"]["matchLabels"], pod_labels), "DaemonSet selector matches its pods")
    check(spec.get("hostPID") is True, "DaemonSet hostPID (client pids and /proc are the host's)")
    volume = host_path_volume(spec, SOCKET_DIR)
    check(volume is not None, f"DaemonSet hostPath {SOCKET_DIR}")
    containers = [c for c in spec["containers"] if c["name"] == "taskwatchd"]
    if not check(len(containers) == 1, "a taskwatchd container"):
        print(f"{passed} passed, {failed} failed")
        return 1
    daemon = containers[0]
    args = daemon.get("args", [])
    check(mounts(daemon, volume, SOCKET_DIR), f"taskwatchd mounts {SOCKET_DIR}")
    check(flag(args, "--ingest.socket") == SOCKET, f"--ingest.socket={SOCKET}")
    check(flag(args, "--ingest.socket-mode") == "0660", "--ingest.socket-mode=0660")
    check(flag(args, "--web.listen-address") == ":10101", "--web.listen-address=:10101")
    ports = {p["name"]: p for p in daemon.get("ports", [])}
    check(ports.get("http-metrics", {}).get("containerPort") == 10101, "container port http-metrics is 10101")
    check(daemon.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/-/ready"
          and daemon["readinessProbe"]["httpGet"].get("port") == "http-metrics", "readiness probe /-/ready on http-metrics")
    check(daemon.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/-/healthy"
          and daemon["livenessProbe"]["httpGet"].get("port") == "http-metrics", "liveness probe /-/healthy on http-metrics")
    resources = daemon.get("resources", {})
    check(bool(resources.get("requests", {}).get("cpu")) and bool(resources.get("requests", {}).get("memory"))
          and bool(resources.get("limits", {}).get("memory")), "taskwatchd resources: cpu and memory requests, memory limit")
    sc = daemon.get("securityContext", {})
    check(sc.get("runAsNonRoot") is True and isinstance(sc.get("runAsUser"), int) and sc["runAsUser"] > 0, "taskwatchd runs as non-root")
    check(sc.get("readOnlyRootFilesystem") is True, "taskwatchd root filesystem read-only")
    check(sc.get("allowPrivilegeEscalation") is False, "taskwatchd no privilege escalation")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc.get("capabilities", {}).get("add"), "taskwatchd drops all capabilities")
    for init in spec.get("initContainers", []):
        isc = init.get("securityContext", {})
        added = set(isc.get("capabilities", {}).get("add", []))
        check(isc.get("capabilities", {}).get("drop") == ["ALL"] and added <= {"CHOWN", "FOWNER"},
              f"init container {init['name']}: only CHOWN and FOWNER")
        check(mounts(init, volume, SOCKET_DIR), f"init container {init['name']} prepares {SOCKET_DIR}")
        check(f"{sc.get('runAsUser')}:{sc.get('runAsGroup')}" in " ".join(init.get("command", [])),
              f"init container {init['name']} hands {SOCKET_DIR} to the daemon's uid:gid")

    service = kinds["Service"]
    check(matches(service["spec"]["selector"], pod_labels), "Service selects the DaemonSet's pods")
    check(any(p.get("name") == "http-metrics" and p.get("port") == 10101 for p in service["spec"]["ports"]),
          "Service port http-metrics 10101")
    # An application pod asks its own node's daemon: the only one whose /metrics lists its processes.
    check(matches(local["spec"]["selector"], pod_labels) and local["spec"].get("internalTrafficPolicy") == "Local"
          and local["spec"].get("clusterIP") != "None",
          "the node-local Service selects the daemon pods, with internalTrafficPolicy Local")
    check(any(p.get("port") == 10101 and p.get("targetPort") == "http-metrics" for p in local["spec"]["ports"]),
          "the node-local Service forwards 10101 to http-metrics")

    pm = kinds["PodMonitor"]
    check(pm.get("apiVersion") == "monitoring.coreos.com/v1", "PodMonitor is monitoring.coreos.com/v1")
    check(matches(pm["spec"]["selector"]["matchLabels"], pod_labels), "PodMonitor selects the DaemonSet's pods")
    check(namespace in pm["spec"].get("namespaceSelector", {}).get("matchNames", [namespace]), "PodMonitor looks in the namespace")
    endpoints = pm["spec"].get("podMetricsEndpoints", [])
    check(any(e.get("port") == "http-metrics" and e.get("path", "/metrics") == "/metrics" and e.get("interval") == "15s" for e in endpoints),
          "PodMonitor scrapes http-metrics /metrics every 15s")
    check(pod_labels.get(pm["spec"].get("jobLabel")) == "taskwatch", 'PodMonitor jobLabel gives job="taskwatch"')

    # Target labels: the node, not the daemon pod. The series describe the node's processes; a pid is
    # unique only per node; a rollout replaces the pod (new name, new IP) on the same node.
    endpoint = next((e for e in endpoints if e.get("port") == "http-metrics"), {})
    port = ports.get("http-metrics", {}).get("containerPort", 10101)
    old_pod = None
    try:
        old_pod = pod_monitor_target(pm, endpoint, pod_labels, "taskwatchd-7xk2p", "node-a", "10.1.2.3", port, daemon["name"])
        new_pod = pod_monitor_target(pm, endpoint, pod_labels, "taskwatchd-q9z4m", "node-a", "10.1.7.9", port, daemon["name"])
        other_node = pod_monitor_target(pm, endpoint, pod_labels, "taskwatchd-b5c8d", "node-b", "10.1.2.3", port, daemon["name"])
    except (KeyError, ValueError, re.error) as error:
        check(False, f"PodMonitor relabelings can be worked out: {error}")
    else:
        check(old_pod == {"job": "taskwatch", "instance": "node-a", "node": "node-a"},
              f'PodMonitor target labels are job="taskwatch", instance and node the node name, nothing of the daemon pod: {old_pod}')
        check(old_pod is not None and new_pod == old_pod,
              f"a rollout (new pod and IP on the same node) keeps the target labels: {old_pod} vs {new_pod}")
        check(other_node is not None and old_pod is not None and other_node["instance"] != old_pod["instance"],
              "daemons on two nodes have different instance labels, even when a pod IP is reused")
    # The same labels from the plain Prometheus job deploy/README.md gives for setups without the operator.
    blocks = re.findall(r"```yaml\n(.*?)```", read("deploy/README.md"), re.S)
    plain = next((b for b in blocks if "kubernetes_sd_configs" in b), None)
    if check(plain is not None, "deploy/README.md has a kubernetes_sd_configs job for Prometheus without the operator"):
        job = yaml.safe_load(plain)["scrape_configs"][0]
        camel = [{re.sub(r"_(\w)", lambda m: m.group(1).upper(), k): v for k, v in c.items()} for c in job.get("relabel_configs", [])]
        labels = {"job": job["job_name"], "__address__": f"10.1.2.3:{port}",
                  "__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_name": "taskwatchd-7xk2p",
                  "__meta_kubernetes_pod_node_name": "node-a", "__meta_kubernetes_pod_container_port_name": "http-metrics"}
        for key, value in pod_labels.items():
            labels["__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)] = value
        result = relabel(labels, camel)
        if result is not None:
            result.setdefault("instance", result["__address__"])
            result = {k: v for k, v in result.items() if not k.startswith("__")}
        check(result == old_pod, f"the plain Prometheus job gives the PodMonitor's target labels: {result} vs {old_pod}")
        other = dict(labels, __meta_kubernetes_pod_container_port_name="other")
        check(relabel(other, camel) is None, "the plain Prometheus job keeps only the http-metrics port")
        promtool = shutil.which("promtool")
        if promtool:
            with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
                f.write(plain)
                path = f.name
            try:
                result = subprocess.run([promtool, "check", "config", "--syntax-only", path], capture_output=True, text=True)
            finally:
                os.unlink(path)
            if "kubernetes_sd_configs not found" in result.stderr:
                # Debian's prometheus package is built without Kubernetes service discovery.
                print("SKIP: this promtool has no Kubernetes service discovery; the plain job not checked by promtool")
            else:
                check(result.returncode == 0, f"promtool accepts the plain Prometheus job: {result.stdout}{result.stderr}")
    check_priority(ds, kinds["PriorityClass"], manifests)

    strategy = ds["spec"].get("updateStrategy", {})
    check(strategy.get("type", "RollingUpdate") == "RollingUpdate"
          and str(strategy.get("rollingUpdate", {}).get("maxSurge", 0)) in ("0", "0%"),
          "DaemonSet rolls out without maxSurge (two daemon pods on a node would be two targets with the same labels)")

    app = kinds["Pod"]
    app_spec = app["spec"]
    app_volume = host_path_volume(app_spec, SOCKET_DIR)
    check(app_volume is not None, f"example app mounts hostPath {SOCKET_DIR}")
    app_container = app_spec["containers"][0]
    check(mounts(app_container, app_volume, SOCKET_DIR), f"example app container mounts it at {SOCKET_DIR}")
    check(any(m.get("name") == app_volume and m.get("readOnly") is True for m in app_container.get("volumeMounts", [])),
          f"example app mounts {SOCKET_DIR} read-only (connecting to a socket needs no writable mount)")
    # Pod Security: baseline and restricted forbid hostPath volumes, so the app's namespace needs
    # privileged (or an exemption), and the comments must not say the daemon's namespace is the only one.
    namespace_text, app_text = read("deploy/kubernetes/namespace.yaml"), read("deploy/kubernetes/example-app.yaml")
    check("only here" not in namespace_text and "application" in namespace_text and "example-app.yaml" in namespace_text,
          "namespace.yaml does not claim the privileged level is needed only for the daemon, and points at the apps")
    app_comments = " ".join(line.lstrip("# ") for line in app_text.splitlines() if line.startswith("#"))
    check(all(word in app_comments for word in ("baseline", "restricted", "privileged", "exemption")),
          "example-app.yaml says what Pod Security level or exemption the application's namespace needs")
    readme = read("deploy/README.md")
    check("Pod Security in application namespaces" in readme and "here, and only here" not in readme,
          "deploy/README.md has the section example-app.yaml and namespace.yaml point to")
    # `taskwatch check` defaults to localhost:10101, which in an application pod is the pod itself.
    command = app_container.get("command", [])
    address = f"taskwatchd-local.{namespace}.svc:10101"
    check(command[:2] == ["taskwatch", "check"] and "--address" in command
          and command[command.index("--address") + 1:][:1] == [address],
          f"the example's taskwatch check asks its node's daemon at {address}")
    env = {e["name"]: e.get("value") for e in app_container.get("env", [])}
    check(env.get("TASKWATCH_SOCKET") == flag(args, "--ingest.socket"), "example app TASKWATCH_SOCKET is the daemon's socket")
    check(sc.get("runAsGroup") in app_spec.get("securityContext", {}).get("supplementalGroups", []),
          "example app joins the socket's group")

    check_image(ds, app)

    # The generator.
    generator = os.path.join(HERE, "generate-prometheusrule.py")
    spec_ = importlib.util.spec_from_file_location("generate_prometheusrule", generator)
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)
    result = subprocess.run([sys.executable, generator, "--label", "release=prometheus"], capture_output=True, text=True)
    check(result.returncode == 0, f"generate-prometheusrule.py runs: {result.stderr}")
    generated = yaml.safe_load(result.stdout) if result.returncode == 0 else {}
    check(generated.get("apiVersion") == "monitoring.coreos.com/v1" and generated.get("kind") == "PrometheusRule", "generates a PrometheusRule")
    check(generated.get("metadata", {}).get("labels", {}).get("release") == "prometheus", "--label reaches metadata.labels")
    expected = []
    for rel in RULE_FILES:
        with open(os.path.join(ROOT, rel)) as f:
            expected.extend(yaml.safe_load(f)["groups"])
    check(generated.get("spec", {}).get("groups") == expected, f"its groups equal {' + '.join(RULE_FILES)} exactly")
    check(module.build()["spec"]["groups"] == expected, "build() returns the same groups")
    check_kubernetes_alerts(ds, generated.get("spec", {}).get("groups", []))
    promtool = shutil.which("promtool")
    if promtool and generated:
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            yaml.safe_dump({"groups": generated["spec"]["groups"]}, f)
            path = f.name
        try:
            check_result = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
        finally:
            os.unlink(path)
        check(check_result.returncode == 0, f"promtool accepts the generated rules: {check_result.stdout}{check_result.stderr}")
    else:
        print("SKIP: promtool not installed; generated rules not checked by promtool")
    tracked = subprocess.run(["git", "-C", ROOT, "ls-files", "deploy/kubernetes/prometheusrule.yaml"], capture_output=True, text=True)
    check(tracked.returncode != 0 or tracked.stdout.strip() == "", "the generated prometheusrule.yaml is not committed")

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
