#!/usr/bin/env python3
"""Checks on `helm template` output of deploy/helm/herald (run by
scripts/check-deploy.sh, which installs what this needs).

For every render given with --render:
  * every object validates offline (schemas.py: Kubernetes schemas, strict,
    for the oldest and newest supported version; KEDA and Prometheus-operator
    CRD schemas, strict; KEDA kafka trigger parameters);
  * the rendered herald.toml is accepted by the real `herald config check`,
    run with the environment the pods get (Secret values replaced by a
    well-formed dummy): so every `env:` reference is wired to a Secret;
  * one adapter Deployment per configured destination, running
    `herald-adapter --destination <d>`, and nothing else;
  * each adapter's ScaledObject targets its Deployment and has one kafka
    trigger per topic Herald itself names for that destination (destination
    topic + retry tiers, from `config check --json`), all on the group
    <prefix>.adapter.<d>;
  * PDBs and Services select pods that exist; probes use the admin port;
  * the PrometheusRule carries exactly the groups of deploy/prometheus/alerts.yml;
  * the dashboards ConfigMap carries exactly deploy/grafana/dashboards/*.json;
  * the ServiceMonitor selects Services whose job label starts with herald-;
  * with sources in herald.toml (gateway.enabled), one gateway Deployment
    running `herald-gateway`, listening where herald.toml says (gateway.listen
    on its `http` port, gateway.admin_listen on the admin port), with every
    source's `env:` secret in its environment and every `file:` secret under
    a Secret mount, and `herald config check` (which reads the sources'
    secrets) passing with the gateway container's own environment;
    a Service for `http` that does not expose the admin port; when KEDA
    scales it, one prometheus trigger on herald_gateway_requests_total whose
    job matcher is a job the ServiceMonitor scrapes, and minReplicaCount
    of at least 1; without sources, no gateway;
  * with the delivery log on (a StatefulSet of component `log`): exactly
    one replica running `herald-log --listen 0.0.0.0:<its http port> --db
    <a file on its volumeClaimTemplate's mount>`, probes on `http`, a
    ClusterIP Service on `http`, scraped by the ServiceMonitor as job
    herald-log, and HERALD_LOG_URL in every Herald container naming that
    Service; with it off, none of these.
With --demo (the example values' render): the destinations equal those of
examples/demo.toml, key for key except `url`, and so do the sources.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

import schemas

DUMMY_SECRET = "whsec_ZHVtbXktc2lnbmluZy1zZWNyZXQtZm9yLWNoZWNrcw=="


class Report:
    def __init__(self):
        self.failures = []

    def fail(self, what, msg):
        self.failures.append(f"{what}: {msg}")

    def expect(self, cond, what, msg):
        if not cond:
            self.fail(what, msg)
        return cond


def load_render(path):
    return [o for o in yaml.safe_load_all(Path(path).read_text()) if o]


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def pod_labels(obj):
    return obj["spec"]["template"]["metadata"].get("labels", {})


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def selects_expr(label_selector, labels):
    """A LabelSelector (matchLabels and matchExpressions) against labels."""
    if not selects(label_selector.get("matchLabels"), labels):
        return False
    for e in label_selector.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        ok = {"Exists": k in labels, "DoesNotExist": k not in labels,
              "In": labels.get(k) in vals, "NotIn": k not in labels or labels[k] not in vals}[op]
        if not ok:
            return False
    return True


def container_env(container):
    """The container's environment as the process sees it, Secrets dummied."""
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            env[e["name"]] = DUMMY_SECRET
        elif "fieldRef" in e.get("valueFrom", {}):
            env[e["name"]] = "pod-0"
    return env


def secret_mounts(pod_spec, container):
    """Mount paths of the Secret volumes in a container."""
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    return [mounts[v["name"]] for v in pod_spec.get("volumes", []) if "secret" in v and v["name"] in mounts]


def herald_config_check(herald, toml_text, env, what, rep, secret_dirs=()):
    """`herald config check --json` on toml_text with env; `file:` secrets
    under one of secret_dirs (the pod's Secret mounts) read a dummy file,
    others must exist here (they will not)."""
    with tempfile.TemporaryDirectory() as d:
        def dummy_file(m):
            path = m.group(1)
            if not any(path.startswith(s.rstrip("/") + "/") for s in secret_dirs):
                return m.group(0)
            f = Path(d, "secrets", path.lstrip("/"))
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(DUMMY_SECRET + "\n")
            return json.dumps(f"file:{f}")
        toml_text = re.sub(r'"file:(/[^"]+)"', dummy_file, toml_text)
        cfg = Path(d, "herald.toml")
        cfg.write_text(toml_text)
        run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        run_env.update({k: v for k, v in env.items() if k != "HERALD_CONFIG"})
        p = subprocess.run(
            [herald, "--config", str(cfg), "config", "check", "--json"],
            capture_output=True, text=True, env=run_env,
        )
    if p.returncode != 0:
        rep.fail(what, f"`herald config check` rejects the rendered herald.toml: {p.stderr.strip() or p.stdout.strip()}")
        return None
    return json.loads(p.stdout)


def check_render(path, args, crds, kafka_keys, prometheus_keys, rep):
    objs = load_render(path)
    name = Path(path).name
    for e in schemas.validate_objects(objs, args.k8s_version, crds, kafka_keys, prometheus_keys):
        rep.fail(name, e)

    configmaps = {o["metadata"]["name"]: o for o in by_kind(objs, "ConfigMap")}
    tomls = {n: o["data"]["herald.toml"] for n, o in configmaps.items() if "herald.toml" in o.get("data", {})}
    main = [n for n in tomls if not n.endswith("-topics-config")]
    if not rep.expect(len(main) == 1, name, f"expected one herald.toml ConfigMap, found {sorted(tomls)}"):
        return None
    toml_text = tomls[main[0]]
    for n, t in tomls.items():
        rep.expect(t == toml_text, name, f"ConfigMap {n}'s herald.toml differs from {main[0]}'s")
    prefix = tomllib.loads(toml_text).get("topics", {}).get("prefix", "herald")

    workloads = by_kind(objs, "Deployment") + by_kind(objs, "StatefulSet")
    def component(kind, c):
        return [d for d in by_kind(objs, kind) if pod_labels(d).get("app.kubernetes.io/component") == c]
    adapters = component("Deployment", "adapter")
    gateways = component("Deployment", "gateway")
    routers = component("StatefulSet", "router")
    logs = component("StatefulSet", "log")
    rep.expect(len(routers) == 1, name, "expected one router StatefulSet")
    rep.expect(len(by_kind(objs, "StatefulSet")) == len(routers) + len(logs), name,
               "a StatefulSet that is neither the router nor the delivery log")

    # Each pod's config mount must be a ConfigMap carrying the same herald.toml.
    for w in workloads + by_kind(objs, "Job"):
        spec = w["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        cm = vols.get("config", {}).get("configMap", {}).get("name")
        rep.expect(cm in tomls, name, f"{w['kind']}/{w['metadata']['name']} mounts ConfigMap {cm!r}, which has no herald.toml")
        for c in spec["containers"]:
            rep.expect(container_env(c).get("HERALD_CONFIG") == "/etc/herald/herald.toml", name,
                       f"{w['metadata']['name']}: HERALD_CONFIG is not the mounted /etc/herald/herald.toml")
            if w["kind"] == "Job":
                continue
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            # herald-log serves /metrics and the probes beside its API, on `http`.
            admin = "http" if w in logs else "admin"
            rep.expect(admin in ports, name, f"{w['metadata']['name']}: no {admin} port")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                got = c.get(probe, {}).get("httpGet", {})
                rep.expect(got.get("path") == path and got.get("port") == admin, name,
                           f"{w['metadata']['name']}: {probe} should be GET {path} on the {admin} port, is {got}")
            rep.expect(c.get("resources", {}).get("requests") and c["resources"].get("limits", {}).get("memory"),
                       name, f"{w['metadata']['name']}: no resource requests or memory limit")

    first = (adapters or routers or [None])[0]
    env, dirs = {}, []
    if first:
        pod = first["spec"]["template"]["spec"]
        env, dirs = container_env(pod["containers"][0]), secret_mounts(pod, pod["containers"][0])
    checked = herald_config_check(args.herald, toml_text, env, name, rep, dirs)
    if checked is None:
        return None
    listen_port = routers[0]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] if routers else None
    toml = tomllib.loads(toml_text)
    for svc in ("router", "adapter"):
        rep.expect(toml.get(svc, {}).get("listen", "").endswith(f":{listen_port}"), name,
                   f"{svc}.listen {toml.get(svc, {}).get('listen')!r} is not the admin port {listen_port}")
    check_gateway(objs, gateways, toml, toml_text, args, name, rep)
    check_log(objs, logs, workloads, name, rep)

    dests = checked["destinations"]
    by_dest = {}
    for d in adapters:
        dest = pod_labels(d).get("herald.dev/destination")
        cmd = d["spec"]["template"]["spec"]["containers"][0].get("command")
        rep.expect(cmd == ["herald-adapter", "--destination", dest], name,
                   f"Deployment/{d['metadata']['name']} runs {cmd}, not herald-adapter --destination {dest}")
        by_dest[dest] = d
    rep.expect(set(by_dest) == set(dests), name,
               f"adapter Deployments {sorted(by_dest)} != destinations in herald.toml {sorted(dests)}")

    scaled = {o["spec"]["scaleTargetRef"]["name"]: o for o in by_kind(objs, "ScaledObject")}
    for s in scaled:
        rep.expect(any(d["metadata"]["name"] == s for d in adapters + gateways), name,
                   f"ScaledObject targets {s!r}, no such adapter or gateway Deployment")
    for dest, d in by_dest.items():
        so = scaled.get(d["metadata"]["name"])
        if so is None:
            rep.expect("replicas" in d["spec"], name, f"{dest}: neither a ScaledObject nor replicas")
            continue
        rep.expect("replicas" not in d["spec"], name, f"{dest}: Deployment sets replicas although KEDA scales it")
        info = dests.get(dest, {})
        want = [info.get("topic")] + info.get("retry_topics", [])
        trig = [t["metadata"] for t in so["spec"]["triggers"] if t["type"] == "kafka"]
        rep.expect([t["topic"] for t in trig] == want, name,
                   f"{dest}: ScaledObject topics {[t['topic'] for t in trig]} != Herald's {want}")
        for t in trig:
            rep.expect(t["consumerGroup"] == f"{prefix}.adapter.{dest}", name,
                       f"{dest}: trigger group {t['consumerGroup']!r} is not {prefix}.adapter.{dest}")
            rep.expect(t["bootstrapServers"] == toml["kafka"]["bootstrap_servers"] or args.allow_keda_bootstrap, name,
                       f"{dest}: trigger bootstrapServers {t['bootstrapServers']!r} differs from kafka.bootstrap_servers")

    pods = [pod_labels(w) for w in workloads]
    for pdb in by_kind(objs, "PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        n = sum(selects(sel, p) for p in pods)
        rep.expect(n == 1, name, f"PodDisruptionBudget/{pdb['metadata']['name']} selects {n} workloads, not 1")
    for svc in by_kind(objs, "Service"):
        rep.expect(any(selects(svc["spec"]["selector"], p) for p in pods), name,
                   f"Service/{svc['metadata']['name']} selects no pods")

    for rule in by_kind(objs, "PrometheusRule"):
        source = yaml.safe_load(Path(args.alerts).read_text())["groups"]
        rep.expect(rule["spec"]["groups"] == source, name,
                   f"PrometheusRule/{rule['metadata']['name']} differs from {args.alerts} "
                   "(regenerate: scripts/check-deploy.sh --write)")
    for cm in configmaps.values():
        if "herald.toml" in cm.get("data", {}) or not cm["metadata"]["name"].endswith("-dashboards"):
            continue
        source = {p.name: p.read_text() for p in sorted(Path(args.dashboards).glob("*.json"))}
        rep.expect(cm["data"] == source, name,
                   f"ConfigMap/{cm['metadata']['name']} differs from {args.dashboards}/*.json "
                   "(regenerate: scripts/check-deploy.sh --write)")
        for text in cm["data"].values():
            json.loads(text)
    for sm in by_kind(objs, "ServiceMonitor"):
        job_label = sm["spec"].get("jobLabel")
        hit = [s for s in by_kind(objs, "Service") if selects_expr(sm["spec"]["selector"], s["metadata"]["labels"])]
        jobs = sorted(s["metadata"]["labels"].get(job_label, "") for s in hit)
        rep.expect(jobs and all(j.startswith("herald-") for j in jobs), name,
                   f"ServiceMonitor/{sm['metadata']['name']}: job labels {jobs} (HeraldServiceDown expects herald-*)")
        ports = {p["name"] for s in hit for p in s["spec"]["ports"]}
        for ep in sm["spec"]["endpoints"]:
            rep.expect(ep.get("port") in ports, name, f"ServiceMonitor endpoint port {ep.get('port')!r} is not a Service port")
    return toml


def check_gateway(objs, gateways, toml, toml_text, args, name, rep):
    sources = toml.get("sources", {})
    if not sources:
        rep.expect(not gateways, name, "a gateway Deployment, but no [sources.*] in herald.toml")
        return
    if not rep.expect(len(gateways) == 1, name, f"[sources.*] in herald.toml but {len(gateways)} gateway Deployments"):
        return
    g = gateways[0]
    gname = g["metadata"]["name"]
    spec = g["spec"]["template"]["spec"]
    c = spec["containers"][0]
    rep.expect(c.get("command") == ["herald-gateway"], name, f"Deployment/{gname} runs {c.get('command')}, not herald-gateway")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    gw = toml.get("gateway", {})
    for key, port in (("listen", "http"), ("admin_listen", "admin")):
        rep.expect(port in ports and gw.get(key, "").startswith("0.0.0.0:") and gw[key].endswith(f":{ports[port]}"), name,
                   f"gateway.{key} {gw.get(key)!r} is not 0.0.0.0 on the container's {port} port {ports.get(port)}")
    # The gateway reads its sources' secrets at start-up: each reference
    # must be wired into its container (named here; `herald config check`
    # with the gateway's environment below then reads them as it would).
    env = container_env(c)
    secret_dirs = secret_mounts(spec, c)
    for sname, src in sources.items():
        for ref in src.get("secrets", []):
            if ref.startswith("env:"):
                rep.expect(ref[4:] in env, name, f"sources.{sname} references {ref}, not in Deployment/{gname}'s environment")
            elif ref.startswith("file:"):
                rep.expect(any(ref[5:].startswith(d.rstrip("/") + "/") for d in secret_dirs), name,
                           f"sources.{sname} references {ref}, not under a Secret mounted in Deployment/{gname} ({secret_dirs})")
            else:
                rep.fail(name, f"sources.{sname}: a secret written into the values; use env: or file: references")
    checked = herald_config_check(args.herald, toml_text, env, f"{name} (gateway environment)", rep, secret_dirs)
    if checked is not None:
        rep.expect(set(checked.get("sources", {})) == set(sources), name,
                   f"`herald config check` sees sources {sorted(checked.get('sources', {}))}, herald.toml has {sorted(sources)}")
    # Providers reach `http`; /metrics stays off that Service.
    labels = pod_labels(g)
    svcs = [s for s in by_kind(objs, "Service") if selects(s["spec"]["selector"], labels)]
    public = [s for s in svcs if any(p.get("targetPort") in ("http", ports.get("http")) for p in s["spec"]["ports"])]
    rep.expect(len(public) == 1, name, f"{len(public)} Services route to the gateway's http port, expected 1")
    for s in public:
        rep.expect(not any(p.get("targetPort") in ("admin", ports.get("admin")) for p in s["spec"]["ports"]), name,
                   f"Service/{s['metadata']['name']} exposes the gateway's admin port next to http")
    scraped_jobs = set()
    for sm in by_kind(objs, "ServiceMonitor"):
        for s in svcs:
            if selects_expr(sm["spec"]["selector"], s["metadata"]["labels"]) and sm["spec"].get("jobLabel") in s["metadata"]["labels"]:
                scraped_jobs.add(s["metadata"]["labels"][sm["spec"]["jobLabel"]])
    rep.expect(not by_kind(objs, "ServiceMonitor") or scraped_jobs == {"herald-gateway"}, name,
               f"the ServiceMonitor scrapes the gateway as jobs {sorted(scraped_jobs)}, not herald-gateway")
    so = [o for o in by_kind(objs, "ScaledObject") if o["spec"]["scaleTargetRef"]["name"] == gname]
    if not so:
        rep.expect("replicas" in g["spec"], name, f"Deployment/{gname}: neither a ScaledObject nor replicas")
        return
    so = so[0]
    rep.expect("replicas" not in g["spec"], name, f"Deployment/{gname} sets replicas although KEDA scales it")
    rep.expect(so["spec"].get("minReplicaCount", 0) >= 1, name,
               f"ScaledObject/{so['metadata']['name']}: minReplicaCount below 1 (nothing would count requests to scale it up again)")
    trig = so["spec"]["triggers"]
    if not rep.expect(len(trig) == 1 and trig[0]["type"] == "prometheus", name,
                      f"ScaledObject/{so['metadata']['name']}: expected one prometheus trigger, got {[t['type'] for t in trig]}"):
        return
    query = trig[0]["metadata"].get("query", "")
    rep.expect("herald_gateway_requests_total" in query, name, f"gateway trigger query {query!r} is not on herald_gateway_requests_total")
    job = re.search(r'job\s*=\s*"([^"]*)"', query)
    if job and by_kind(objs, "ServiceMonitor"):
        rep.expect(job.group(1) in scraped_jobs, name,
                   f"gateway trigger query matches job {job.group(1)!r}, but the ServiceMonitor scrapes the gateway as {sorted(scraped_jobs)}")
    if trig[0].get("authenticationRef"):
        ref = trig[0]["authenticationRef"]["name"]
        rep.expect(any(o["metadata"]["name"] == ref for o in by_kind(objs, "TriggerAuthentication")), name,
                   f"gateway trigger's authenticationRef {ref!r}: no such TriggerAuthentication")


def check_log(objs, logs, workloads, name, rep):
    """The delivery log: one pod, its index on a claim, reachable in the
    cluster and scraped; every Herald container told where it is."""
    urls = {f"{w['metadata']['name']}/{c.get('name')}": container_env(c).get("HERALD_LOG_URL")
            for w in workloads + by_kind(objs, "Job") for c in w["spec"]["template"]["spec"]["containers"]}
    if not logs:
        rep.expect(not any(urls.values()), name, f"HERALD_LOG_URL set without a herald-log: {urls}")
        for sm in by_kind(objs, "ServiceMonitor"):
            rep.expect(all(ep.get("port") != "http" for ep in sm["spec"]["endpoints"]), name,
                       "the ServiceMonitor scrapes port http, but there is no herald-log")
        return
    if not rep.expect(len(logs) == 1, name, f"{len(logs)} herald-log StatefulSets, expected at most 1"):
        return
    s = logs[0]
    sname = s["metadata"]["name"]
    rep.expect(s["spec"].get("replicas") == 1, name,
               f"StatefulSet/{sname}: replicas {s['spec'].get('replicas')}, herald-log must run exactly once per index")
    spec = s["spec"]["template"]["spec"]
    c = spec["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    cmd = c.get("command") or []
    flag = lambda f: cmd[cmd.index(f) + 1] if f in cmd and cmd.index(f) + 1 < len(cmd) else None
    rep.expect(cmd[:1] == ["herald-log"], name, f"StatefulSet/{sname} runs {cmd}, not herald-log")
    rep.expect(flag("--listen") == f"0.0.0.0:{ports.get('http')}", name,
               f"StatefulSet/{sname}: --listen {flag('--listen')!r} is not 0.0.0.0 on its http port {ports.get('http')}")
    claims = {t["metadata"]["name"] for t in s["spec"].get("volumeClaimTemplates", [])}
    mounts = [m["mountPath"] for m in c.get("volumeMounts", []) if m["name"] in claims]
    db = flag("--db") or ""
    rep.expect(any(db.startswith(m.rstrip("/") + "/") for m in mounts), name,
               f"StatefulSet/{sname}: --db {db!r} is not on a volumeClaimTemplate mount ({mounts})")
    svcs = [v for v in by_kind(objs, "Service") if selects(v["spec"]["selector"], pod_labels(s))]
    http = [v for v in svcs if any(p.get("targetPort") in ("http", ports.get("http")) for p in v["spec"]["ports"])]
    if rep.expect(len(http) == 1, name, f"{len(http)} Services route to herald-log's http port, expected 1"):
        v = http[0]
        rep.expect(v["spec"].get("type", "ClusterIP") == "ClusterIP" and v["spec"].get("clusterIP") != "None", name,
                   f"Service/{v['metadata']['name']}: herald-log's API belongs behind a ClusterIP Service")
        port = next(p["port"] for p in v["spec"]["ports"] if p.get("targetPort") in ("http", ports.get("http")))
        want = f"http://{v['metadata']['name']}.{v['metadata'].get('namespace', 'herald')}.svc:{port}"
        bad = {n: u for n, u in urls.items() if u is not None and not u.startswith(f"http://{v['metadata']['name']}.")}
        rep.expect(all(urls.values()) and not bad, name,
                   f"HERALD_LOG_URL should name {want} in every Herald container: {urls}")
    for sm in by_kind(objs, "ServiceMonitor"):
        job_label = sm["spec"].get("jobLabel")
        hit = [v for v in http if selects_expr(sm["spec"]["selector"], v["metadata"]["labels"])]
        jobs = {v["metadata"]["labels"].get(job_label) for v in hit}
        eps = {ep.get("port") for ep in sm["spec"]["endpoints"]}
        rep.expect(jobs == {"herald-log"} and "http" in eps, name,
                   f"ServiceMonitor/{sm['metadata']['name']} does not scrape herald-log's http port as job herald-log "
                   f"(jobs {sorted(j or '' for j in jobs)}, endpoint ports {sorted(eps)})")


def check_demo(toml, demo_path, rep):
    demo_toml = tomllib.loads(Path(demo_path).read_text())
    demo = demo_toml.get("destinations", {})
    got = toml.get("destinations", {})
    if rep.expect(set(got) == set(demo), "example values",
                  f"destinations {sorted(got)} != {demo_path}'s {sorted(demo)}"):
        for d in demo:
            a = {k: v for k, v in got[d].items() if k != "url"}
            b = {k: v for k, v in demo[d].items() if k != "url"}
            rep.expect(a == b, "example values", f"destination {d}: {a} != {demo_path}'s {b} (url aside)")
    demo_sources = demo_toml.get("sources", {})
    got_sources = toml.get("sources", {})
    rep.expect(got_sources == demo_sources, "example values",
               f"sources {got_sources} != {demo_path}'s {demo_sources}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--render", action="append", required=True)
    ap.add_argument("--demo-render", help="the render of the example values")
    ap.add_argument("--demo", default="examples/demo.toml")
    ap.add_argument("--crd", action="append", required=True)
    ap.add_argument("--kafka-scaler", required=True, help="KEDA's pkg/scalers/kafka_scaler.go")
    ap.add_argument("--prometheus-scaler", required=True, help="KEDA's pkg/scalers/prometheus_scaler.go")
    ap.add_argument("--keda-auth-types", required=True, help="KEDA's pkg/scalers/authentication/authentication_types.go")
    ap.add_argument("--k8s-version", action="append", required=True)
    ap.add_argument("--herald", required=True)
    ap.add_argument("--alerts", default="deploy/prometheus/alerts.yml")
    ap.add_argument("--dashboards", default="deploy/grafana/dashboards")
    ap.add_argument("--allow-keda-bootstrap", action="store_true")
    args = ap.parse_args()

    crds = schemas.CrdSchemas(args.crd)
    kafka_keys = schemas.kafka_trigger_params(args.kafka_scaler)
    prometheus_keys = schemas.prometheus_trigger_params(args.prometheus_scaler, args.keda_auth_types)
    rep = Report()
    renders = list(args.render) + ([args.demo_render] if args.demo_render else [])
    for r in renders:
        n = len(rep.failures)
        toml = check_render(r, args, crds, kafka_keys, prometheus_keys, rep)
        if r == args.demo_render and toml is not None:
            check_demo(toml, args.demo, rep)
        objs = load_render(r)
        status = "ok" if len(rep.failures) == n else "FAILED"
        print(f"  {status}: {Path(r).name}: {len(objs)} objects "
              f"({', '.join(sorted({o['kind'] for o in objs}))})")
    for f in rep.failures:
        print(f"  FAIL {f}", file=sys.stderr)
    sys.exit(1 if rep.failures else 0)


if __name__ == "__main__":
    main()
