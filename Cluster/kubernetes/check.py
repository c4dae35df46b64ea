#!/usr/bin/env python3
"""Checks what the Kubernetes schemas cannot: that the objects of mnist.yaml (and copy-model.yaml) agree,
and that both sides get their CURVE keys (--keys) from Secrets mounted so that mnist accepts them.

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


def secret_files(path, docs):
    """{Secret name: its file names}, from the Secrets defined in the manifest and from the
    `kubectl create secret generic NAME --from-file=...` commands in its comments (a trailing backslash
    continues a command on the next comment line; --from-file=KEY=PATH names the file KEY)."""
    files = {d["metadata"]["name"]: set(d.get("data", {})) | set(d.get("stringData", {}))
             for d in docs if d.get("kind") == "Secret"}
    with open(path) as file:
        comments = " ".join(line[1:].strip() for line in file if line.startswith("#")).replace("\\ ", " ")
    for name, options in re.findall(r"kubectl create secret generic (\S+)((?:\s+--from-file=\S+)+)", comments):
        values = re.findall(r"--from-file=(\S+)", options)
        files[name] = {v.split("=", 1)[0] if "=" in v else os.path.basename(v) for v in values}
    return files


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

    # CURVE keys: the coordinator binds beyond loopback, so it needs --keys (or --insecure, which this
    # manifest must not use); each side reads its folder from a Secret volume mounted read-only, with
    # files only their owner (root, the image's user) may read: mnist refuses a secret key others may
    # read, and an fsGroup would make the files group-readable. The workers' Secret is not the
    # coordinator's, and the Secrets hold the files each side reads (see mnist.yaml's header).
    check("--insecure" not in coordinator["args"], "the coordinator must not run with --insecure")
    created = secret_files(manifest, docs)
    secret_names = {}
    for role, pod, each in (("coordinator", coordinator_pod, coordinator), ("worker", worker_pod, worker)):
        keys = flag(each["args"], "--keys")
        check(keys is not None, f"the {role} needs --keys (the folder of its CURVE keys)")
        if keys is None:
            continue
        mount = mount_of(each, keys + "/coordinator.public")
        volume = {v["name"]: v for v in pod.get("volumes", [])}.get(mount and mount["name"], {})
        secret = volume.get("secret")
        check(
            secret is not None and mount["mountPath"].rstrip("/") == keys.rstrip("/") and "subPath" not in mount,
            f"the {role}'s --keys {keys} must be the mountPath of a Secret volume, found {mount} of {volume}")
        if secret is None:
            continue
        check(mount.get("readOnly") is True, f"the {role}'s keys volume must be mounted readOnly")
        modes = [secret.get("defaultMode", 0o644)] + [item["mode"] for item in secret.get("items", []) if "mode" in item]
        check(all(mode & 0o077 == 0 and mode & 0o400 for mode in modes),
              f"the {role}'s key files must be readable by their owner only (0400), not {[oct(m) for m in modes]}")
        security = pod.get("securityContext", {})
        check("fsGroup" not in security,
              f"the {role}'s pod must not set fsGroup: it makes the key files group-readable, which mnist refuses")
        users = [security.get("runAsUser"), each.get("securityContext", {}).get("runAsUser")]
        check(all(user in (None, 0) for user in users) and not security.get("runAsNonRoot"),
              f"the {role} must run as root, the owner of its mode-0400 key files, not as user {users}")
        name = secret.get("secretName")
        secret_names[role] = name
        files = created.get(name)
        check(files is not None, f"Secret {name} of the {role} is neither defined nor created in the header's commands")
        files = files or set()
        if "items" in secret:  # Only the listed keys are mounted, each under its path.
            files = {item["path"] for item in secret["items"] if item["key"] in files}
        worker_public = {f for f in files if re.fullmatch(r"worker(-[^/]+)?\.public", f)}
        worker_secret = {f for f in files if re.fullmatch(r"worker(-[^/]+)?\.secret", f)}
        if role == "coordinator":
            check("coordinator.secret" in files and worker_public,
                  f"Secret {name} must hold coordinator.secret and a worker*.public, not {sorted(files)}")
        else:
            check("coordinator.public" in files and len(worker_secret) == 1 and "coordinator.secret" not in files,
                  f"Secret {name} must hold coordinator.public and one worker*.secret, never coordinator.secret, "
                  f"not {sorted(files)}")
    check(len(secret_names) < 2 or secret_names["coordinator"] != secret_names["worker"],
          "the workers must not mount the coordinator's Secret (it holds coordinator.secret)")

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
