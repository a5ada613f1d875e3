{{/*
Names, labels, the herald.toml renderer and topic names. Topic and group
names follow crates/herald-core/src/topics.rs; scripts/check-deploy.sh
compares them with `herald config check --json` on the rendered config.
*/}}

{{- define "herald.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "herald.labels" -}}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "herald.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "herald.prefix" -}}
{{- .Values.config.topics.prefix | default "herald" -}}
{{- end -}}

{{/*
The config as written to herald.toml: .Values.config, the destinations
without their chart-only `k8s` key, with gateway.enabled the gateway's
sources, and every admin listener on the container's admin port (the
gateway's public listener on gateway.port).
*/}}
{{- define "herald.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $listen := printf "0.0.0.0:%d" (int .Values.adminPort) -}}
{{- $_ := set $cfg "router" (merge (dict "listen" $listen) (omit ($cfg.router | default dict) "listen")) -}}
{{- $_ := set $cfg "adapter" (merge (dict "listen" $listen) (omit ($cfg.adapter | default dict) "listen")) -}}
{{- $dests := dict -}}
{{- range $name, $d := .Values.destinations -}}
{{- $_ := set $dests $name (omit $d "k8s") -}}
{{- end -}}
{{- $_ := set $cfg "destinations" $dests -}}
{{- if .Values.gateway.enabled -}}
{{- $public := printf "0.0.0.0:%d" (int .Values.gateway.port) -}}
{{- $_ := set $cfg "gateway" (merge (dict "listen" $public "admin_listen" $listen) (omit ($cfg.gateway | default dict) "listen" "admin_listen")) -}}
{{- $_ := set $cfg "sources" (deepCopy .Values.gateway.sources) -}}
{{- end -}}
{{- toJson $cfg -}}
{{- end -}}

{{/* ---- TOML ---------------------------------------------------------- */}}

{{- define "herald.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{/* A scalar, array or inline table. Integral numbers print as integers. */}}
{{- define "herald.toml.value" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}{{ toJson $v }}
{{- else if kindIs "bool" $v -}}{{ $v }}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) -}}
{{- if eq (float64 (int64 $v)) (float64 $v) -}}{{ int64 $v }}{{- else -}}{{ $v }}{{- end -}}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "int32" $v) -}}{{ $v }}
{{- else if kindIs "slice" $v -}}
[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "herald.toml.value" $e }}{{ end }}]
{{- else if kindIs "map" $v -}}
{ {{- range $i, $k := keys $v | sortAlpha }}{{ if $i }},{{ end }} {{ include "herald.toml.key" $k }} = {{ include "herald.toml.value" (get $v $k) }}{{ end }} }
{{- else -}}
{{- fail (printf "herald.toml: cannot write %v (%s)" $v (kindOf $v)) -}}
{{- end -}}
{{- end -}}

{{/* One table: its scalar keys, then each sub-table as [path.key]. */}}
{{- define "herald.toml.table" -}}
{{- $path := .path -}}
{{- $t := .table -}}
{{- $strings := .strings | default false -}}
{{- $scalars := 0 }}
{{- range $k, $v := $t }}{{ if not (kindIs "map" $v) }}{{ $scalars = add1 $scalars }}{{ end }}{{ end }}
{{- if and $path (or $scalars (not $t)) }}

[{{ $path }}]
{{- end }}
{{- range $k := keys $t | sortAlpha }}
{{- $v := get $t $k }}
{{- if and (not (kindIs "map" $v)) (not (kindIs "invalid" $v)) }}
{{- if and $strings (or (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v)) }}
{{ include "herald.toml.key" $k }} = {{ include "herald.toml.value" $v | quote }}
{{- else if $strings }}
{{ include "herald.toml.key" $k }} = {{ toJson (toString $v) }}
{{- else }}
{{ include "herald.toml.key" $k }} = {{ include "herald.toml.value" $v }}
{{- end }}
{{- end }}
{{- end }}
{{- range $k := keys $t | sortAlpha }}
{{- $v := get $t $k }}
{{- if kindIs "map" $v }}
{{- $sub := ternary (include "herald.toml.key" $k) (printf "%s.%s" $path (include "herald.toml.key" $k)) (eq $path "") }}
{{- /* kafka.client holds librdkafka properties: strings, whatever YAML made of them */}}
{{- include "herald.toml.table" (dict "path" $sub "table" $v "strings" (or $strings (eq $sub "kafka.client"))) }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "herald.toml" -}}
# herald.toml, rendered by the Helm chart from its values (config + destinations + gateway.sources).
{{- include "herald.toml.table" (dict "path" "" "table" (fromJson (include "herald.config" .))) }}
{{- end -}}

{{/* ---- topic names ---------------------------------------------------- */}}

{{/* A duration ("30s", "2m", "1h 30m", "500ms") as topics.rs names it. */}}
{{- define "herald.compactDuration" -}}
{{- $ms := 0 -}}
{{- range $part := splitList " " (toString .) -}}
{{- if $part -}}
{{- $m := regexFindAll "^([0-9]+)(ms|s|m|h|d)$" $part -1 -}}
{{- if not $m -}}{{- fail (printf "retry tier %q: write tiers as e.g. 30s, 2m, 1h, 1h 30m" $part) -}}{{- end -}}
{{- $n := int64 (regexReplaceAll "[a-z]+$" $part "") -}}
{{- $unit := regexReplaceAll "^[0-9]+" $part "" -}}
{{- $size := get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000) $unit -}}
{{- $ms = add $ms (mul $n $size) -}}
{{- end -}}
{{- end -}}
{{- $out := printf "%dms" $ms -}}
{{- if eq $ms 0 -}}{{- $out = "0s" -}}
{{- else if eq (mod $ms 86400000) 0 -}}{{- $out = printf "%dd" (div $ms 86400000) -}}
{{- else if eq (mod $ms 3600000) 0 -}}{{- $out = printf "%dh" (div $ms 3600000) -}}
{{- else if eq (mod $ms 60000) 0 -}}{{- $out = printf "%dm" (div $ms 60000) -}}
{{- else if eq (mod $ms 1000) 0 -}}{{- $out = printf "%ds" (div $ms 1000) -}}
{{- end -}}
{{- $out -}}
{{- end -}}

{{/* Tiers of a destination: its own, else Herald's default ladder. */}}
{{- define "herald.tiers" -}}
{{- $retry := .dest.retry | default dict -}}
{{- toJson (hasKey $retry "tiers" | ternary $retry.tiers (list "30s" "2m" "15m" "1h")) -}}
{{- end -}}

{{/* ---- pod pieces ------------------------------------------------------ */}}

{{/* Environment shared by every Herald container. */}}
{{- define "herald.env" -}}
- name: HERALD_CONFIG
  value: /etc/herald/herald.toml
{{- if .Values.log.enabled }}
# `herald trace` / `herald reconcile` in any pod ask the delivery log.
- name: HERALD_LOG_URL
  value: http://{{ include "herald.fullname" . }}-log.{{ .Release.Namespace }}.svc:{{ .Values.log.port }}
{{- end }}
{{- range .Values.secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
      {{- if hasKey . "optional" }}
      optional: {{ .optional }}
      {{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "herald.volumeMounts" -}}
- name: config
  mountPath: /etc/herald/herald.toml
  subPath: herald.toml
  readOnly: true
{{- range .Values.secretFiles }}
- name: secret-{{ .name }}
  mountPath: {{ .mountPath | default (printf "/etc/herald/secrets/%s" .name) }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "herald.volumes" -}}
- name: config
  configMap:
    name: {{ .configMap }}
{{- range .root.Values.secretFiles }}
- name: secret-{{ .name }}
  secret:
    secretName: {{ .secretName }}
{{- end }}
{{- end -}}

{{- define "herald.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: admin}
  periodSeconds: 5
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /healthz, port: admin}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: admin}
  periodSeconds: 5
  failureThreshold: 2
{{- end -}}

{{/*
Every `env:NAME` secret reference in a destination or a gateway source must
name a variable the pods get (secretEnv or extraEnv): fail at render time,
not at start-up.
*/}}
{{- define "herald.checkSecretRefs" -}}
{{- $names := list -}}
{{- range .Values.secretEnv }}{{ $names = append $names .name }}{{ end -}}
{{- range .Values.extraEnv }}{{ $names = append $names .name }}{{ end -}}
{{- $refs := list -}}
{{- range $dname, $d := .Values.destinations -}}
{{- range $ref := concat (list ($d.secret | default "")) ($d.extra_secrets | default list) -}}
{{- $refs = append $refs (list (printf "destinations.%s" $dname) $ref) -}}
{{- end -}}
{{- end -}}
{{- if .Values.gateway.enabled -}}
{{- range $sname, $s := .Values.gateway.sources -}}
{{- range $ref := ($s.secrets | default list) -}}
{{- $refs = append $refs (list (printf "gateway.sources.%s" $sname) $ref) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $r := $refs -}}
{{- $ref := index $r 1 | toString -}}
{{- if hasPrefix "env:" $ref -}}
{{- $var := trimPrefix "env:" $ref -}}
{{- if not (has $var $names) -}}
{{- fail (printf "%s references %s, but no secretEnv (or extraEnv) entry is named %s" (index $r 0) $ref $var) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The gateway's values, refused at render time where they cannot work.
*/}}
{{- define "herald.checkGateway" -}}
{{- $g := .Values.gateway -}}
{{- if $g.enabled -}}
{{- if not $g.sources -}}
{{- fail "gateway.enabled is true but gateway.sources is empty: the gateway has nothing to serve (it exits at start-up)" -}}
{{- end -}}
{{- range $sname, $s := $g.sources -}}
{{- if not (regexMatch "^[a-z0-9-]+$" $sname) -}}
{{- fail (printf "gateway.sources.%s: source names use only a-z, 0-9 and '-' (they are URL paths and metric labels)" $sname) -}}
{{- end -}}
{{- end -}}
{{- if eq (int $g.port) (int .Values.adminPort) -}}
{{- fail (printf "gateway.port %d is adminPort: /metrics must stay off the providers' port" (int $g.port)) -}}
{{- end -}}
{{- if and .Values.keda.enabled $g.keda.enabled -}}
{{- if not $g.keda.serverAddress -}}
{{- fail "gateway.keda.serverAddress is empty: set the URL of the Prometheus that scrapes the gateway (e.g. http://prometheus-operated.monitoring.svc:9090), or gateway.keda.enabled=false and gateway.replicas" -}}
{{- end -}}
{{- if lt (int $g.keda.minReplicaCount) 1 -}}
{{- fail "gateway.keda.minReplicaCount must be at least 1: a gateway scaled to zero answers no provider and counts no request, so its request rate never activates it again" -}}
{{- end -}}
{{- if lt (int $g.keda.maxReplicaCount) (int $g.keda.minReplicaCount) -}}
{{- fail "gateway.keda.maxReplicaCount is below gateway.keda.minReplicaCount" -}}
{{- end -}}
{{- if not (gt (float64 $g.keda.threshold) 0.0) -}}
{{- fail "gateway.keda.threshold must be more than zero (requests per second per replica)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
