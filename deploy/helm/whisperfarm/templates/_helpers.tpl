{{/* Chart name, overridable. */}}
{{- define "whisperfarm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart> (the release name alone when it already contains the chart name),
truncated to 63 characters because some Kubernetes name fields are limited to that (DNS-1123).
*/}}
{{- define "whisperfarm.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* name-version for the helm.sh/chart label. */}}
{{- define "whisperfarm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades, so never the version. */}}
{{- define "whisperfarm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "whisperfarm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Common labels on every object. */}}
{{- define "whisperfarm.labels" -}}
helm.sh/chart: {{ include "whisperfarm.chart" . }}
{{ include "whisperfarm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: whisperfarm
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "broker"). */}}
{{- define "whisperfarm.componentSelectorLabels" -}}
{{ include "whisperfarm.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels of one component's objects: (dict "root" $ "component" "broker"). */}}
{{- define "whisperfarm.componentLabels" -}}
{{ include "whisperfarm.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Resource names of the components. */}}
{{- define "whisperfarm.broker.fullname" -}}
{{- printf "%s-broker" (include "whisperfarm.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "whisperfarm.broker.zmqServiceName" -}}
{{- printf "%s-broker-zmq" (include "whisperfarm.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "whisperfarm.workers.fullname" -}}
{{- printf "%s-workers" (include "whisperfarm.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "whisperfarm.gui.fullname" -}}
{{- printf "%s-gui" (include "whisperfarm.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "whisperfarm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "whisperfarm.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference of one flavour: (dict "root" $ "flavour" "cpu"|"gpu"). */}}
{{- define "whisperfarm.image" -}}
{{- $image := .root.Values.image }}
{{- $digest := get $image.digests .flavour }}
{{- if $digest }}
{{- printf "%s@%s" $image.repository $digest }}
{{- else }}
{{- printf "%s:%s-%s" $image.repository (default .root.Chart.AppVersion $image.tag) .flavour }}
{{- end }}
{{- end }}

{{/* Broker URL inside the cluster (for the GUI). */}}
{{- define "whisperfarm.broker.url" -}}
{{- printf "http://%s:%d" (include "whisperfarm.broker.fullname" .) (int .Values.broker.service.port) }}
{{- end }}

{{/* ZeroMQ endpoint workers connect to. */}}
{{- define "whisperfarm.broker.zmqEndpoint" -}}
{{- printf "tcp://%s:%d" (include "whisperfarm.broker.zmqServiceName" .) (int .Values.broker.zmqPort) }}
{{- end }}

{{/* Name of the Secret with the API tokens. */}}
{{- define "whisperfarm.auth.secretName" -}}
{{- default (printf "%s-auth" (include "whisperfarm.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* Pod-level security context shared by every component. */}}
{{- define "whisperfarm.podSecurityContext" -}}
runAsNonRoot: {{ .Values.podSecurityContext.runAsNonRoot }}
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
fsGroup: {{ .Values.podSecurityContext.fsGroup }}
seccompProfile:
  type: {{ .Values.podSecurityContext.seccompProfileType }}
{{- end }}

{{/* Container-level security context: nothing is writable but the mounted volumes. */}}
{{- define "whisperfarm.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: {{ .Values.podSecurityContext.seccompProfileType }}
{{- end }}

{{/* Environment every component shares. HOME is on the /tmp emptyDir (read-only root). */}}
{{- define "whisperfarm.commonEnv" -}}
- name: HOME
  value: /tmp
- name: PROMETHEUS_DISABLE_CREATED_SERIES
  value: "True"
{{- end }}

{{/*
Pod annotations: scrape annotations (when enabled) plus the component's own.
(dict "root" $ "port" 8000 "extra" .Values.broker.podAnnotations); port 0: no /metrics to scrape.
Renders nothing when there is no annotation.
*/}}
{{- define "whisperfarm.podAnnotations" -}}
{{- $annotations := dict }}
{{- if and .port .root.Values.metrics.scrapeAnnotations }}
{{- $_ := set $annotations "prometheus.io/scrape" "true" }}
{{- $_ := set $annotations "prometheus.io/port" (toString .port) }}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" }}
{{- end }}
{{- $annotations = merge (deepCopy (default dict .extra)) $annotations }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
checkov skip annotations of a Deployment, each with its justification (docs/deploy.md lists them):
(dict "root" $ "flavour" "cpu" "envSecret" true).
*/}}
{{- define "whisperfarm.checkovSkips" -}}
{{- $skips := list }}
{{- if not (get .root.Values.image.digests .flavour) }}
{{- $skips = append $skips "CKV_K8S_43=The image is built per release by the user; pin it with image.digests.cpu/gpu (then this check passes and the skip is not rendered)" }}
{{- end }}
{{- if .envSecret }}
{{- $skips = append $skips "CKV_K8S_35=The broker reads its API tokens from the WHISPERFARM_BROKER_API_TOKENS setting (pydantic-settings, env only); switch to a mounted file once the broker reads one" }}
{{- end }}
{{- range $i, $skip := $skips }}
checkov.io/skip{{ add1 $i }}: {{ $skip | quote }}
{{- end }}
{{- end }}
