#!/usr/bin/env python3
"""Checks what the Kubernetes schemas cannot: that the objects of mnist.yaml (and copy-model.yaml) agree.

Usage: python3 Cluster/kubernetes/check.py [mnist.yaml [copy-model.yaml]]   (needs PyYAML)
Prints the number of checks on success; otherwise each failed check, and exits 1.
validate.sh (run by Cluster/test.sh) runs it after validating both files against the Kubernetes schemas.
"""
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))


def load(path):
    with open(path) as file:
        return [doc for doc in yaml.safe_load_all(file) if doc]


def one(docs, kind, name):
    found = [d for d in docs if d.get("kind") == kind and d.get("metadata", {}).get("name") == name]
    if len(found) != 1:
        raise SystemExit(f"check.py: expected one {kind} named {name}, found {len(found)}")
    return found[0]


def container(containers, name):
    found = [c for c in containers if c.get("name") == name]
    if len(found) != 1:
        raise SystemExit(f"check.py: expected one container named {name}, found {len(found)}")
    return found[0]


def flag(args, name):
    """The value of `--name value` or `--name=value` in a container's args, or None."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg[len(name) + 1 :]
    return None


def endpoint(value):
    """(host, port) of a ZeroMQ tcp:// endpoint, or None."""
    match = re.fullmatch(r"tcp://(.+):(\d+)", value or "")
    return (match.group(1), int(match.group(2))) if match else None


def pod_labels(job):
    """The labels Kubernetes puts on a Job's pods: the template's, plus the job-name labels."""
    name = job["metadata"]["name"]
    labels = dict(job["spec"]["template"].get("metadata", {}).get("labels", {}))
    labels.update({"job-name": name, "batch.kubernetes.io/job-name": name})
    return labels


def mount_of(spec, path):
    """The volume mount of a container spec holding `path` (the longest matching mountPath), or None."""
    mounts = [m for m in spec.get("volumeMounts", []) if (path + "/").startswith(m["mountPath"].rstrip("/") + "/")]
    return max(mounts, key=lambda m: len(m["mountPath"]), default=None)


def main(manifest, copy_manifest):
    docs = load(manifest)
    service = one(docs, "Service", "mnist-coordinator")
    coordinator_job = one(docs, "Job", "mnist-coordinator")
    worker_job = one(docs, "Job", "mnist-worker")
    coordinator_pod = coordinator_job["spec"]["template"]["spec"]
    worker_pod = worker_job["spec"]["template"]["spec"]
    coordinator = container(coordinator_pod["containers"], "coordinator")
    worker = container(worker_pod["containers"], "worker")
    fetch = container(coordinator_pod.get("initContainers", []), "fetch")
    claims = {d["metadata"]["name"] for d in docs if d.get("kind") == "PersistentVolumeClaim"}
    failures = []
    count = 0

    def check(condition, message):
        nonlocal count
        count += 1
        if not condition:
            failures.append(message)

    # Worker count: the coordinator waits for --workers; the Indexed Job starts completions workers.
    workers = flag(coordinator["args"], "--workers")
    spec = worker_job["spec"]
    check(
        workers is not None and workers.isdigit() and int(workers) == spec.get("completions") == spec.get("parallelism"),
        f"coordinator --workers {workers} must equal the worker Job's completions ({spec.get('completions')}) "
        f"and parallelism ({spec.get('parallelism')})")
    check(spec.get("completionMode") == "Indexed", "the worker Job must be Indexed (one pod per worker slot)")

    # The Service reaches the coordinator's pod, and only it.
    selector = service["spec"].get("selector", {})
    coordinator_labels, worker_labels = pod_labels(coordinator_job), pod_labels(worker_job)
    check(
        bool(selector) and all(coordinator_labels.get(k) == v for k, v in selector.items()),
        f"Service selector {selector} does not match the coordinator's pod labels {coordinator_labels}")
    check(
        not all(worker_labels.get(k) == v for k, v in selector.items()),
        f"Service selector {selector} also matches the worker pods")

    # One port end to end: coordinator --bind, containerPort, Service targetPort and port, worker --connect.
    bind = endpoint(flag(coordinator["args"], "--bind") or "tcp://*:5555")
    connect = endpoint(flag(worker["args"], "--connect"))
    ports = service["spec"].get("ports", [])
    check(len(ports) == 1, "the Service must have exactly one port")
    port = ports[0] if ports else {}
    target = port.get("targetPort", port.get("port"))
    container_ports = {p.get("name"): p["containerPort"] for p in coordinator.get("ports", [])}
    target_number = container_ports.get(target) if isinstance(target, str) else target
    check(bind is not None and bind[0] in ("*", "0.0.0.0"), f"coordinator --bind {bind} must listen on all interfaces")
    check(
        bind is not None and bind[1] == target_number and bind[1] in container_ports.values(),
        f"coordinator binds port {bind and bind[1]}, containerPorts {sorted(container_ports.values())}, "
        f"Service targetPort {target}")
    check(
        connect is not None and connect[1] == port.get("port"),
        f"worker --connect port {connect and connect[1]} must be the Service port {port.get('port')}")
    service_name = service["metadata"]["name"]
    check(
        connect is not None and (connect[0] == service_name or connect[0].startswith(service_name + ".")),
        f"worker --connect host {connect and connect[0]} must be the Service name {service_name}")

    # The model goes to the claim (which outlives the pod), and the data the fetch container writes is
    # the data the coordinator reads.
    volumes = {v["name"]: v for v in coordinator_pod.get("volumes", [])}
    output_mount = mount_of(coordinator, flag(coordinator["args"], "--output") or "model.safetensors")
    output_volume = volumes.get(output_mount and output_mount["name"], {})
    claim = output_volume.get("persistentVolumeClaim", {}).get("claimName")
    check(claim is not None, f"coordinator --output must be on a PersistentVolumeClaim volume, not {output_volume}")
    check(claim in claims, f"claim {claim} used by the coordinator is not defined in {os.path.basename(manifest)}")
    data = flag(coordinator["args"], "--data")
    data_mount = mount_of(coordinator, data or "")
    fetch_mount = mount_of(fetch, flag(fetch["args"], "--data") or "")
    check(
        data_mount is not None and fetch_mount is not None and data_mount["name"] == fetch_mount["name"]
        and flag(fetch["args"], "--data") == data,
        "the fetch init container must write --data to the volume and folder the coordinator reads")

    # Kubernetes leaves an undefined $(VAR) as it is, which the command line would then reject.
    for job, each in ((coordinator_job, coordinator), (coordinator_job, fetch), (worker_job, worker)):
        defined = {e["name"] for e in each.get("env", [])}
        if job is worker_job and spec.get("completionMode") == "Indexed":
            defined.add("JOB_COMPLETION_INDEX")
        used = set(re.findall(r"\$\((\w+)\)", " ".join(each.get("args", []))))
        check(used <= defined, f"container {each['name']} uses undefined $({', '.join(sorted(used - defined))})")
    for job, pod in ((coordinator_job, coordinator_pod), (worker_job, worker_pod)):
        check(pod.get("restartPolicy") in ("Never", "OnFailure"),
              f"Job {job['metadata']['name']} needs restartPolicy Never or OnFailure")

    # The copy pod mounts the same claim at the same path, so the documented `kubectl cp` path holds.
    if copy_manifest:
        copy_pod = one(load(copy_manifest), "Pod", "mnist-copy-model")
        copy_spec = copy_pod["spec"]
        copy_volumes = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in copy_spec["volumes"]}
        copy_mounts = {m["mountPath"]: copy_volumes.get(m["name"]) for c in copy_spec["containers"]
                       for m in c.get("volumeMounts", [])}
        check(
            output_mount is not None and copy_mounts.get(output_mount["mountPath"]) == claim,
            f"{os.path.basename(copy_manifest)} must mount claim {claim} at "
            f"{output_mount and output_mount['mountPath']}, found {copy_mounts}")

    for failure in failures:
        print(f"check.py: {failure}", file=sys.stderr)
    if failures:
        return 1
    print(f"{count} consistency checks pass")
    return 0


if __name__ == "__main__":
    manifest = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "mnist.yaml")
    copy_manifest = sys.argv[2] if len(sys.argv) > 2 else (os.path.join(HERE, "copy-model.yaml") if len(sys.argv) == 1 else None)
    sys.exit(main(manifest, copy_manifest))
