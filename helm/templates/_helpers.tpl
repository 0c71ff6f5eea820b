{{/* Names and labels. */}}
{{- define "sovereign.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sovereign.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Every object and pod of the release carries these; NetworkPolicies select on them. */}}
{{- define "sovereign.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sovereign.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sovereign.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sovereign.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sovereign-inference
{{- end -}}

{{/* The router pods (the router group's, or the head with routerGroup.enabled false): the ingress replicas, the
only pods that take API traffic and the only ones allowed egress outside the cluster. */}}
{{- define "sovereign.routerSelectorLabels" -}}
{{ include "sovereign.selectorLabels" . }}
app.kubernetes.io/component: router
{{- end -}}

{{/* The head's component: the control plane (GCS, Serve's controller, the autoscaler) beside a router group, or
a router itself when the router runs on the head. */}}
{{- define "sovereign.headComponent" -}}
{{- if .Values.routerGroup.enabled -}}control-plane{{- else -}}router{{- end -}}
{{- end -}}

{{- define "sovereign.headSelectorLabels" -}}
{{ include "sovereign.selectorLabels" . }}
app.kubernetes.io/component: {{ include "sovereign.headComponent" . }}
{{- end -}}

{{/* Router replicas: one per router pod with the router group, else config server.ingress_replicas (on the head). */}}
{{- define "sovereign.ingressReplicas" -}}
{{- if .Values.routerGroup.enabled -}}
{{- $configured := dig "server" "ingress_replicas" nil .Values.config -}}
{{- if and (not (kindIs "invalid" $configured)) (ne (int $configured) (int .Values.routerGroup.replicas)) -}}
{{- fail (printf "config.server.ingress_replicas is %v but routerGroup.replicas is %v: with the router group each router pod hosts one router replica, so set routerGroup.replicas (and leave config.server.ingress_replicas out)" $configured .Values.routerGroup.replicas) -}}
{{- end -}}
{{- .Values.routerGroup.replicas | int -}}
{{- else -}}
{{- dig "server" "ingress_replicas" 1 .Values.config | int -}}
{{- end -}}
{{- end -}}

{{/* Where Serve runs its HTTP proxies (serve.proxyLocation; "" chooses from the router's placement). */}}
{{- define "sovereign.proxyLocation" -}}
{{- $location := .Values.serve.proxyLocation | default (ternary "EveryNode" "HeadOnly" .Values.routerGroup.enabled) -}}
{{- if and .Values.routerGroup.enabled (ne $location "EveryNode") -}}
{{- fail (printf "serve.proxyLocation is %s but routerGroup.enabled needs EveryNode: API traffic arrives at the router pods, so Serve must run a proxy there (leave serve.proxyLocation empty)" $location) -}}
{{- end -}}
{{- $location -}}
{{- end -}}

{{/* GPU/CPU worker pods: model hosts, no egress outside the release. */}}
{{- define "sovereign.modelHostSelectorLabels" -}}
{{ include "sovereign.selectorLabels" . }}
app.kubernetes.io/component: model-host
{{- end -}}

{{- define "sovereign.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "sovereign.apiPort" -}}
{{- dig "server" "port" 8000 .Values.config | int -}}
{{- end -}}

{{/* The router's Prometheus listener (config server.metrics_port; serving/config.py's default), off the API port.
One router replica per router pod listens on metricsPort; with several router replicas on the head each takes the
next port: metricsPort .. metricsPort + replicas - 1. */}}
{{- define "sovereign.metricsPort" -}}
{{- dig "server" "metrics_port" 9464 .Values.config | int -}}
{{- end -}}

{{- define "sovereign.metricsPorts" -}}
{{- $first := include "sovereign.metricsPort" . | int -}}
{{- $replicas := ternary 1 (include "sovereign.ingressReplicas" . | int) .Values.routerGroup.enabled -}}
{{- range $i := until $replicas }}
- {{ add $first $i }}
{{- end -}}
{{- end -}}

{{- define "sovereign.configPath" -}}/etc/sovereign/config/config.yaml{{- end -}}

{{/*
The effective sovereign configuration: .Values.config with the settings the chart owns, so that paths and
resources agree with the pods it renders. Rendered into the ConfigMap and inline into serveConfigV2.
*/}}
{{- define "sovereign.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $server := deepCopy (default (dict) $cfg.server) -}}
{{- $_ := set $server "host" "0.0.0.0" -}}
{{- $_ := set $server "port" (include "sovereign.apiPort" . | int) -}}
{{- /* Prometheus reaches the router's metrics on the pod's address; the NetworkPolicy admits only its scrapers. */ -}}
{{- $_ := set $server "metrics_host" "0.0.0.0" -}}
{{- $_ := set $server "metrics_port" (include "sovereign.metricsPort" . | int) -}}
{{- $_ := set $server "ingress_replicas" (include "sovereign.ingressReplicas" . | int) -}}
{{- $res := deepCopy (default (dict) $server.ingress_ray_resources) -}}
{{- $_ := set $res .Values.router.rayResource 1 -}}
{{- $_ := set $server "ingress_ray_resources" $res -}}
{{- $_ := set $cfg "server" $server -}}
{{- $audit := deepCopy (default (dict) $cfg.audit) -}}
{{- $_ := set $audit "path" (printf "%s/%s" .Values.audit.mountPath .Values.audit.fileName) -}}
{{- $_ := set $cfg "audit" $audit -}}
{{- if .Values.auth.existingSecret -}}
{{- $auth := deepCopy (default (dict) $cfg.auth) -}}
{{- $_ := set $auth "keys_file" (printf "%s/%s" .Values.auth.mountPath .Values.auth.key) -}}
{{- $_ := set $cfg "auth" $auth -}}
{{- end -}}
{{- $jwks := default (dict) .Values.auth.jwks -}}
{{- if or $jwks.existingSecret $jwks.existingConfigMap -}}
{{- if and $jwks.existingSecret $jwks.existingConfigMap -}}
{{- fail "auth.jwks: set existingSecret or existingConfigMap, not both" -}}
{{- end -}}
{{- $auth := deepCopy (default (dict) $cfg.auth) -}}
{{- if not $auth.oidc -}}
{{- fail "auth.jwks is set but config.auth.oidc is not: set its issuer, audience and claims" -}}
{{- end -}}
{{- $oidc := deepCopy $auth.oidc -}}
{{- if $oidc.jwks_url -}}
{{- fail "config.auth.oidc.jwks_url and auth.jwks are both set: the keys come from one place" -}}
{{- end -}}
{{- $_ := set $oidc "jwks_file" (printf "%s/%s" $jwks.mountPath $jwks.key) -}}
{{- $_ := set $auth "oidc" $oidc -}}
{{- $_ := set $cfg "auth" $auth -}}
{{- end -}}
{{- $backends := list -}}
{{- range $b := $cfg.backends -}}
{{- $b = deepCopy $b -}}
{{- if eq $b.kind "vllm" -}}
{{- if not (hasPrefix (printf "%s/" (trimSuffix "/" $.Values.weights.mountPath)) (toString $b.model_source)) -}}
{{- fail (printf "config.backends: model_source %q of backend %q must lie inside weights.mountPath %q (the read-only weights volume)" (toString $b.model_source) $b.name $.Values.weights.mountPath) -}}
{{- end -}}
{{- end -}}
{{- if hasKey $.Values.backendSecrets $b.name -}}
{{- if ne $b.kind "openai" -}}
{{- fail (printf "backendSecrets.%s: backend %q is not an openai backend" $b.name $b.name) -}}
{{- end -}}
{{- $ref := index $.Values.backendSecrets $b.name -}}
{{- $_ := set $b "api_key_file" (printf "%s/%s/%s" $.Values.backendSecretsMountPath $b.name $ref.key) -}}
{{- end -}}
{{- $backends = append $backends $b -}}
{{- end -}}
{{- $_ := set $cfg "backends" $backends -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* The Ray Serve config; serving/serve_config.py:serve_config builds the same document (a test compares). */}}
{{- define "sovereign.serveConfig" -}}
{{- $cfg := include "sovereign.config" . | fromYaml -}}
{{- $app := dict "name" .Values.serve.applicationName "route_prefix" "/" "import_path" "serving.app:build_app" "args" (dict "config" $cfg) -}}
{{- with .Values.serve.runtimeEnv -}}
{{- $_ := set $app "runtime_env" . -}}
{{- end -}}
{{- $http := dict "host" $cfg.server.host "port" $cfg.server.port -}}
{{- $serve := dict "proxy_location" (include "sovereign.proxyLocation" .) "http_options" $http "applications" (list $app) -}}
{{- if .Values.tracing.otlpEndpoint -}}
{{- /* serving.telemetry.ray_tracing_config; hasKey, not default: a sampling ratio of 0 stays 0 */ -}}
{{- $telemetry := default (dict) $cfg.telemetry -}}
{{- $ratio := 1.0 -}}
{{- if hasKey $telemetry "trace_sampling_ratio" -}}
{{- $ratio = index $telemetry "trace_sampling_ratio" -}}
{{- end -}}
{{- $_ := set $serve "tracing_config" (dict "enabled" true "exporter_import_path" "serving.telemetry:ray_serve_span_processors" "sampling_ratio" $ratio) -}}
{{- end -}}
{{- toYaml $serve -}}
{{- end -}}

{{/*
Environment every Ray container gets: no phoning home, no model hub, caches on the writable /tmp; with
tracing.otlpEndpoint, where the router, Ray Serve and vLLM export their spans.
*/}}
{{- define "sovereign.commonEnv" -}}
- name: RAY_USAGE_STATS_ENABLED
  value: "0"
- name: VLLM_NO_USAGE_STATS
  value: "1"
- name: DO_NOT_TRACK
  value: "1"
- name: HF_HUB_OFFLINE
  value: "1"
- name: TRANSFORMERS_OFFLINE
  value: "1"
- name: XDG_CACHE_HOME
  value: /tmp/.cache
- name: TRITON_CACHE_DIR
  value: /tmp/.triton
# Serve's proxy and direct-ingress replicas keep a caller's x-request-id only if it is a UUID or a hex token, and
# drop the headers that steer Serve itself (serving/http_edge.py).
- name: RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH
  value: serving.http_edge:serve_http_middlewares
{{- if .Values.serve.haproxy }}
# Serve's HAProxy front, wherever Serve starts a proxy (the controller reads the switch, each proxy the binary).
- name: RAY_SERVE_ENABLE_HA_PROXY
  value: "1"
- name: RAY_SERVE_HAPROXY_BINARY_PATH
  value: /usr/sbin/haproxy
{{- end }}
{{- if .Values.serve.throughputOptimized }}
- name: RAY_SERVE_THROUGHPUT_OPTIMIZED
  value: "1"
- name: RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE
  value: "1"
{{- end }}
{{- with .Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ dig "telemetry" "service_name" "sovereign-inference" $.Values.config | quote }}
{{- end }}
{{- end -}}

{{/* Writable scratch (the root filesystem is read-only), shared memory for Ray's object store and NCCL. */}}
{{- define "sovereign.scratchVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .tmpSize }}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .shmSize }}
{{- end -}}

{{- define "sovereign.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: dshm
  mountPath: /dev/shm
{{- end -}}

{{- define "sovereign.weightsVolume" -}}
- name: weights
{{- if .Values.weights.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.weights.existingClaim }}
    readOnly: true
{{- else }}
{{ toYaml .Values.weights.volume | indent 2 }}
{{- end }}
{{- end -}}

{{- define "sovereign.weightsMount" -}}
- name: weights
  mountPath: {{ .Values.weights.mountPath }}
  readOnly: true
{{- end -}}

{{- define "sovereign.auditClaim" -}}
{{- default (printf "%s-audit" (include "sovereign.fullname" .)) .Values.audit.persistence.existingClaim -}}
{{- end -}}

{{/*
What a router pod carries beyond every Ray pod's (the router group's pods, or the head with the router on it): the
API port, the metrics listener(s), the configuration, the audit claim and the secrets. Secrets and the audit log are
mounted in router pods only.
*/}}
{{- define "sovereign.routerPorts" -}}
- {name: serve, containerPort: {{ include "sovereign.apiPort" . }}, protocol: TCP}
{{- range $i, $port := include "sovereign.metricsPorts" . | fromYamlArray }}
- {name: router-m-{{ $i }}, containerPort: {{ $port }}, protocol: TCP}
{{- end }}
{{- end -}}

{{- define "sovereign.routerEnv" -}}
- name: SOVEREIGN_CONFIG
  value: {{ include "sovereign.configPath" . }}
{{- if .Values.routerGroup.enabled }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
# One hash chain per router pod (the chain is per file; pod names carry their RayCluster's): overrides config
# audit.path (pydantic-settings SOVEREIGN_*). The shipping cursor lies beside it, so each pod ships its own file.
- name: SOVEREIGN_AUDIT__PATH
  value: "{{ .Values.audit.mountPath }}/$(POD_NAME).jsonl"
{{- $anchors := dig "audit" "anchors" nil .Values.config }}
{{- if and $anchors (eq (default "file" $anchors.sink) "file") $anchors.path }}
# Anchors of each pod's chain to a file of its own beside the configured one (no two pods append to one file).
- name: SOVEREIGN_AUDIT__ANCHORS__PATH
  value: "{{ dir (toString $anchors.path) }}/$(POD_NAME).{{ base (toString $anchors.path) }}"
{{- end }}
{{- else }}
- name: RAY_CLUSTER_NAME
  valueFrom:
    fieldRef:
      fieldPath: "metadata.labels['ray.io/cluster']"
{{- if .Values.audit.perClusterFile }}
# One hash chain per RayCluster: overrides config audit.path (pydantic-settings SOVEREIGN_*).
- name: SOVEREIGN_AUDIT__PATH
  value: "{{ .Values.audit.mountPath }}/$(RAY_CLUSTER_NAME).jsonl"
{{- end }}
{{- end }}
{{- end -}}

{{- define "sovereign.routerMounts" -}}
- name: config
  mountPath: /etc/sovereign/config
  readOnly: true
- name: audit
  mountPath: {{ .Values.audit.mountPath }}
{{- if .Values.auth.existingSecret }}
- name: api-keys
  mountPath: {{ .Values.auth.mountPath }}
  readOnly: true
{{- end }}
{{- if or .Values.auth.jwks.existingSecret .Values.auth.jwks.existingConfigMap }}
- name: oidc-jwks
  mountPath: {{ .Values.auth.jwks.mountPath }}
  readOnly: true
{{- end }}
{{- range $name, $ref := .Values.backendSecrets }}
- name: backend-key-{{ $name | replace "_" "-" | replace "." "-" }}
  mountPath: {{ $.Values.backendSecretsMountPath }}/{{ $name }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "sovereign.routerVolumes" -}}
- name: config
  configMap:
    name: {{ include "sovereign.fullname" . }}-config
- name: audit
  persistentVolumeClaim:
    claimName: {{ include "sovereign.auditClaim" . }}
{{- if .Values.auth.existingSecret }}
- name: api-keys
  secret:
    secretName: {{ .Values.auth.existingSecret }}
    defaultMode: 0440
    items:
      - {key: {{ .Values.auth.key }}, path: {{ .Values.auth.key }}}
{{- end }}
{{- with .Values.auth.jwks }}
{{- if .existingSecret }}
- name: oidc-jwks
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0440
    items:
      - {key: {{ .key }}, path: {{ .key }}}
{{- else if .existingConfigMap }}
- name: oidc-jwks
  configMap:
    name: {{ .existingConfigMap }}
    defaultMode: 0444
    items:
      - {key: {{ .key }}, path: {{ .key }}}
{{- end }}
{{- end }}
{{- range $name, $ref := .Values.backendSecrets }}
- name: backend-key-{{ $name | replace "_" "-" | replace "." "-" }}
  secret:
    secretName: {{ $ref.existingSecret }}
    defaultMode: 0440
    items:
      - {key: {{ $ref.key }}, path: {{ $ref.key }}}
{{- end }}
{{- end -}}

{{/* Router pods spread over nodes: anti-affinity among this RayCluster's router pods (matchLabelKeys keeps the old
and the new cluster of a NewCluster upgrade from repelling each other where the cluster supports it). */}}
{{- define "sovereign.routerAntiAffinity" -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "matchLabelKeys" (list "ray.io/cluster") "labelSelector" (dict "matchLabels" (include "sovereign.routerSelectorLabels" . | fromYaml)) -}}
{{- if eq .Values.routerGroup.podAntiAffinity "required" -}}
requiredDuringSchedulingIgnoredDuringExecution:
  - {{- toYaml $term | nindent 4 }}
{{- else -}}
preferredDuringSchedulingIgnoredDuringExecution:
  - weight: 100
    podAffinityTerm:
      {{- toYaml $term | nindent 6 }}
{{- end }}
{{- end -}}
