#!/usr/bin/env python3
"""Checks on docker-compose.yml beyond `docker-compose config` (which
scripts/check-deploy.sh runs first; this reads its normalised output, so
anchors and merges are resolved the way docker-compose resolves them).

  * images: a service either builds this repository's Dockerfile, or names a
    third-party image from the table below, pinned to a version tag that its
    project published (looked up in a package registry reachable here, since
    Docker Hub is not: the image is published for each of these releases);
  * files: every bind mount's source exists in the repository, and the
    paths the services read inside the container are the ones mounted
    (HERALD_CONFIG, Prometheus rule files, Grafana's dashboard provider
    path, the collector's --config);
  * ports: each published container port is one the service listens on;
    every service:port the others talk to (bootstrap servers, scrape
    targets, the data source, OTLP, destination URLs, URLs on a command
    line) is a service that listens there; a Herald service listens where
    its config says (router.listen, adapter.listen, gateway.listen and
    gateway.admin_listen, or their defaults), as overridden by HERALD__…
    variables and --listen / --admin-listen, unless that is loopback;
  * commands: every Herald service runs a binary the Dockerfile installs,
    with a command line whose subcommand and flags appear in the README
    (or in scripts/demo.sh, which the README names as the demo), and the
    adapters are exactly the destinations of the mounted config;
  * the demo provider posts to /webhooks/<source> of a service whose config
    has that source, signing with a secret the source accepts.
"""

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import yaml

# image repository -> how to see that a tag was released
PUBLISHED = {
    "apache/kafka": ("maven", "org/apache/kafka/kafka-clients", lambda t: t),
    "prom/prometheus": ("go", "github.com/prometheus/prometheus",
                        # Prometheus v2.X.Y is Go module version v0.X.Y; v3.X.Y is v0.3XX.Y
                        lambda t: re.sub(r"^v2\.(\d+)\.(\d+)$", r"v0.\1.\2", re.sub(r"^v3\.(\d+)\.(\d+)$", lambda m: f"v0.{300 + int(m[1])}.{m[2]}", t))),
    "grafana/grafana": ("npm", "@grafana/data", lambda t: t),
    "otel/opentelemetry-collector": ("go", "go.opentelemetry.io/collector/otelcol", lambda t: "v" + t.lstrip("v")),
}
# a container port each image listens on without being told
DEFAULT_PORTS = {"prom/prometheus": {9090}, "grafana/grafana": {3000}, "apache/kafka": {9092}}
# Herald binary -> (config key it listens on, flag that overrides it)
HERALD_LISTENERS = {
    "herald-router": [("router.listen", "--listen")],
    "herald-adapter": [("adapter.listen", "--listen")],
    "herald-gateway": [("gateway.listen", "--listen"), ("gateway.admin_listen", "--admin-listen")],
}
# defaults of those keys where Herald has one (crates/herald-core/src/sources.rs)
LISTEN_DEFAULTS = {"gateway.listen": "0.0.0.0:8088", "gateway.admin_listen": "0.0.0.0:9466"}


def released(kind, package, version, cache):
    key = f"{kind} {package} {version}"
    if cache and cache.exists() and key in cache.read_text().splitlines():
        return True
    if kind == "go":
        ok = subprocess.run(["go", "list", "-m", f"{package}@{version}"], capture_output=True).returncode == 0
    elif kind == "npm":
        p = subprocess.run(["npm", "view", f"{package}@{version}", "version"], capture_output=True, text=True)
        ok = p.returncode == 0 and p.stdout.strip() == version
    else:
        artifact = package.rsplit("/", 1)[-1]
        url = f"https://repo1.maven.org/maven2/{package}/{version}/{artifact}-{version}.pom"
        ok = subprocess.run(["curl", "-fsI", "--max-time", "20", url], capture_output=True).returncode == 0
    if ok and cache:
        with cache.open("a") as f:
            f.write(key + "\n")
    return ok


def listen_port(value):
    m = re.search(r":(\d+)$", str(value))
    return int(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config-output", required=True, help="output of `docker-compose config`")
    ap.add_argument("--repo", default=".")
    ap.add_argument("--cache", help="file remembering releases already seen")
    args = ap.parse_args()
    repo = Path(args.repo).resolve()
    compose = yaml.safe_load(Path(args.config_output).read_text())
    services = compose["services"]
    readme = (repo / "README.md").read_text()
    demo_sh = (repo / "scripts/demo.sh").read_text()
    dockerfile = (repo / "Dockerfile").read_text()
    installed = set(re.findall(r"target/release/([\w-]+)", dockerfile.split("COPY --from=build")[0]))
    failures = []

    def fail(svc, msg):
        failures.append(f"{svc}: {msg}")

    listens = {}  # service -> ports it listens on inside the container
    herald = {}
    for name, s in services.items():
        env = s.get("environment") or {}
        if "build" in s:
            ctx = Path(s["build"].get("context", ".")).resolve()
            dockerfile_path = ctx / s["build"].get("dockerfile", "Dockerfile")
            if ctx != repo or not dockerfile_path.exists():
                fail(name, f"builds {dockerfile_path}, not this repository's Dockerfile")
            herald[name] = s
        else:
            image = s.get("image", "")
            repo_name, _, tag = image.partition(":")
            if repo_name not in PUBLISHED:
                fail(name, f"image {image!r} is neither built here nor a known published image (add it to PUBLISHED)")
            elif not tag or tag == "latest":
                fail(name, f"image {image!r} is not pinned to a version")
            else:
                kind, package, to_version = PUBLISHED[repo_name]
                if not released(kind, package, to_version(tag), Path(args.cache) if args.cache else None):
                    fail(name, f"image {image!r}: {package} {to_version(tag)} was never released ({kind} registry)")
            listens[name] = set(DEFAULT_PORTS.get(repo_name, set()))
        for v in s.get("volumes", []):
            src = v.get("source") if isinstance(v, dict) else v.split(":")[0]
            if v.get("type", "bind") == "bind" if isinstance(v, dict) else src.startswith("/"):
                p = Path(src)
                if not p.exists():
                    fail(name, f"mounts {src}, which does not exist")
                elif repo not in p.resolve().parents:
                    fail(name, f"mounts {src}, outside the repository")
        cmd = s.get("command") or []
        for i, c in enumerate(cmd):
            if c in ("--listen", "--admin-listen") and i + 1 < len(cmd):
                listens.setdefault(name, set()).add(listen_port(cmd[i + 1]))

    # Where each service reads its files, and what is mounted there.
    def mounts(svc):
        out = {}
        for v in services[svc].get("volumes", []):
            if isinstance(v, dict):
                out[v["target"]] = Path(v["source"])
            else:
                parts = v.split(":")
                out[parts[1]] = Path(parts[0])
        return out

    def mounted_file(svc, path):
        for target, src in mounts(svc).items():
            if path == target:
                return src
            if path.startswith(target.rstrip("/") + "/"):
                return src / path[len(target.rstrip("/")) + 1:]
        return None

    herald_config = None
    configs = {}  # service -> the config file it reads
    for name, s in herald.items():
        env = s.get("environment") or {}
        cfg = env.get("HERALD_CONFIG")
        if cfg:
            src = mounted_file(name, cfg)
            if src is None or not src.exists():
                fail(name, f"HERALD_CONFIG={cfg} is not a mounted file")
            else:
                herald_config = configs[name] = tomllib.loads(src.read_text())
    # What each Herald binary listens on: its config keys, overridden by
    # HERALD__… variables, overridden by command-line flags (those were
    # counted above). An address on the loopback interface is unreachable
    # from the other containers and does not count.
    for name, s in herald.items():
        env = s.get("environment") or {}
        cmd = s.get("command") or [""]
        for key, flag in HERALD_LISTENERS.get(cmd[0], ()):
            if flag in cmd:
                continue
            section, field = key.split(".")
            var = f"HERALD__{section.upper()}__{field.upper()}"
            value = env.get(var)
            if value is None and name in configs:
                value = configs[name].get(section, {}).get(field)
            if value is None:
                value = LISTEN_DEFAULTS.get(key)
            if value is None:
                continue
            host = str(value).rsplit(":", 1)[0].strip("[]")
            if host in ("127.0.0.1", "localhost", "::1"):
                print(f"  note: {name}: {key} = {value} ({'from ' + var if var in env else 'the config'}) "
                      "is loopback-only inside the container")
                continue
            listens.setdefault(name, set()).add(listen_port(value))

    # Commands: a binary the image has, spelled as the README spells it.
    doc_lines = [l for l in (readme + "\n" + demo_sh).splitlines()]
    adapters = set()
    for name, s in herald.items():
        cmd = s.get("command") or []
        if not cmd:
            fail(name, "no command (the image's default is `herald --help`)")
            continue
        prog = cmd[0]
        if prog not in installed:
            fail(name, f"runs {prog!r}, which the Dockerfile does not install ({sorted(installed)})")
        flags = [c for c in cmd[1:] if c.startswith("-")]
        # the words that name the subcommand: leading non-flag arguments
        sub = []
        for c in cmd[1:]:
            if c.startswith("-"):
                break
            sub.append(c)
        pattern = re.compile(r"(?<![\w-])" + r"\S*\s+".join(map(re.escape, [prog] + sub)) + r"(?![\w-])")
        hits = [l for l in doc_lines if pattern.search(l)]
        hits_readme = [l for l in readme.splitlines() if pattern.search(l)]
        if not hits:
            fail(name, f"`{' '.join([prog] + sub)}` appears neither in README.md nor in scripts/demo.sh")
            continue
        for f in flags:
            if not any(re.search(r"(?<![\w-])" + re.escape(f) + r"(?![\w-])", l) for l in hits):
                fail(name, f"flag {f} of `{' '.join(cmd)}` is not used with `{' '.join([prog] + sub)}` in README.md or scripts/demo.sh")
        if not hits_readme:
            print(f"  note: {name}: `{' '.join([prog] + sub)}` is spelled in scripts/demo.sh only, not in README.md")
        if prog == "herald-adapter" and "--destination" in cmd:
            adapters.add(cmd[cmd.index("--destination") + 1])
    if herald_config is not None:
        dests = set(herald_config.get("destinations", {}))
        if adapters != dests:
            failures.append(f"adapters {sorted(adapters)} != destinations of the mounted config {sorted(dests)}")
        for name, s in herald.items():
            for k in (s.get("environment") or {}):
                m = re.match(r"HERALD__DESTINATIONS__([A-Z0-9_]+)__", k)
                if m and m.group(1).lower() not in dests:
                    fail(name, f"{k} names a destination the config does not have")

    # The demo provider posts to a source the gateway serves, signing with
    # a secret that source accepts.
    for name, s in herald.items():
        cmd = s.get("command") or []
        if cmd[:1] != ["herald-demo-provider"] or "--url" not in cmd:
            continue
        u = urlparse(cmd[cmd.index("--url") + 1])
        m = re.fullmatch(r"/webhooks/([a-z0-9-]+)", u.path or "")
        target = services.get(u.hostname or "")
        if not m or u.hostname not in configs:
            fail(name, f"--url {u.geturl()} is not /webhooks/<source> on a Herald service")
            continue
        source = configs[u.hostname].get("sources", {}).get(m.group(1))
        if source is None:
            fail(name, f"--url {u.geturl()}: {u.hostname}'s config has no [sources.{m.group(1)}]")
            continue
        target_env = target.get("environment") or {}
        accepted = {target_env.get(r[4:]) for r in source.get("secrets", []) if r.startswith("env:")}
        mine = (s.get("environment") or {}).get("STRIPE_WEBHOOK_SECRET")
        if mine not in accepted - {None}:
            fail(name, f"signs with STRIPE_WEBHOOK_SECRET, which is none of the secrets {u.hostname} accepts for sources.{m.group(1)}")

    # Configs passed with --config=: mounted, and the collector's receivers listen.
    for name, s in services.items():
        for c in s.get("command") or []:
            if c.startswith("--config="):
                src = mounted_file(name, c.split("=", 1)[1])
                if src is None or not src.exists():
                    fail(name, f"{c} is not a mounted file")
                elif "otel" in name:
                    oc = yaml.safe_load(src.read_text())
                    for proto in oc["receivers"]["otlp"]["protocols"].values():
                        listens.setdefault(name, set()).add(listen_port(proto["endpoint"]))

    # Who talks to whom.
    def expect_listener(svc, host, port, what):
        if host not in services:
            fail(svc, f"{what} names {host}, which is not a service")
        elif port not in listens.get(host, set()):
            fail(svc, f"{what} uses {host}:{port}, but {host} listens on {sorted(p for p in listens.get(host, set()) if p)}")

    kafka_env = services.get("kafka", {}).get("environment") or {}
    for l in str(kafka_env.get("KAFKA_ADVERTISED_LISTENERS", "")).split(","):
        if l:
            listens.setdefault("kafka", set()).add(urlparse(l).port)
    for name, s in services.items():
        env = s.get("environment") or {}
        for k, v in env.items():
            v = str(v)
            if k.endswith("BOOTSTRAP_SERVERS"):
                for hp in v.split(","):
                    h, _, p = hp.partition(":")
                    expect_listener(name, h, int(p), k)
            elif re.match(r"^https?://", v):
                u = urlparse(v)
                expect_listener(name, u.hostname, u.port or 80, k)
        for c in s.get("command") or []:
            if re.match(r"^https?://", str(c)):
                u = urlparse(c)
                expect_listener(name, u.hostname, u.port or 80, f"command argument {c}")
        for port in s.get("ports", []):
            # docker-compose 1.x writes "[host_ip:]published:target/protocol"
            # as a string when a host address is bound (127.0.0.1:9467:9467/tcp).
            target = port["target"] if isinstance(port, dict) else int(str(port).split(":")[-1].split("/")[0])
            if target not in listens.get(name, set()):
                fail(name, f"publishes container port {target}, but listens on {sorted(p for p in listens.get(name, set()) if p)}")

    # Files the mounted configs point at.
    if "prometheus" in services:
        prom_cfg = next((c.split("=", 1)[1] for c in services["prometheus"].get("command", []) if c.startswith("--config.file=")), None)
        src = mounted_file("prometheus", prom_cfg) if prom_cfg else None
        if src is None or not src.exists():
            fail("prometheus", f"--config.file={prom_cfg} is not mounted")
        else:
            pc = yaml.safe_load(src.read_text())
            for rf in pc.get("rule_files", []):
                if not (src.parent / rf).exists():
                    fail("prometheus", f"rule file {rf} is not next to {src}")
            for job in pc.get("scrape_configs", []):
                for sc in job.get("static_configs", []):
                    for t in sc.get("targets", []):
                        h, _, p = t.partition(":")
                        if h != "localhost":
                            expect_listener("prometheus", h, int(p), f"scrape job {job['job_name']}")
    if "grafana" in services:
        prov = mounted_file("grafana", "/etc/grafana/provisioning")
        for f in sorted((prov / "dashboards").glob("*.y*ml")) if prov else []:
            for p in yaml.safe_load(f.read_text()).get("providers", []):
                path = p.get("options", {}).get("path")
                src = mounted_file("grafana", path) if path else None
                if src is None or not any(src.glob("*.json")):
                    fail("grafana", f"dashboard provider path {path} holds no mounted dashboards")
        for f in sorted((prov / "datasources").glob("*.y*ml")) if prov else []:
            for d in yaml.safe_load(f.read_text()).get("datasources", []):
                u = urlparse(d.get("url", ""))
                expect_listener("grafana", u.hostname, u.port, f"data source {d.get('name')}")
    for f in sorted(set(failures)):
        print(f"  FAIL docker-compose.yml: {f}", file=sys.stderr)
    print(f"  {'FAILED' if failures else 'ok'}: docker-compose.yml: {len(services)} services, "
          f"{len(herald)} built from ./Dockerfile, {len(services) - len(herald)} published images")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
