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

{{/* The head pod: the router (ingress replicas) and the only pod allowed egress outside the cluster. */}}
{{- define "sovereign.routerSelectorLabels" -}}
{{ include "sovereign.selectorLabels" . }}
app.kubernetes.io/component: router
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
With several router replicas on the head each takes the next port: metricsPort .. metricsPort + replicas - 1. */}}
{{- define "sovereign.metricsPort" -}}
{{- dig "server" "metrics_port" 9464 .Values.config | int -}}
{{- end -}}

{{- define "sovereign.metricsPorts" -}}
{{- $first := include "sovereign.metricsPort" . | int -}}
{{- $replicas := dig "server" "ingress_replicas" 1 .Values.config | int -}}
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
{{- $serve := dict "proxy_location" .Values.serve.proxyLocation "http_options" $http "applications" (list $app) -}}
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
