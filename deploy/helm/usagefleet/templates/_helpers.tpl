{{/* The release's base name: the release name, or <release>-usagefleet. */}}
{{- define "usagefleet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* A component's name: <fullname>-worker, -collector, -gateway. */}}
{{- define "usagefleet.name" -}}
{{- printf "%s-%s" (include "usagefleet.fullname" .root) .component -}}
{{- end -}}

{{/* What selects a component's pods (stable across upgrades). */}}
{{- define "usagefleet.selectorLabels" -}}
app.kubernetes.io/name: usagefleet
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "usagefleet.labels" -}}
{{ include "usagefleet.selectorLabels" . }}
app.kubernetes.io/part-of: usagefleet
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "usagefleet.image" -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .binary (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{/*
The nats: section of a component's config, from .Values.nats and the
component's nats values: a .creds file from credsSecret, or user/password
with the password from existingSecret (environment variable NATS_PASSWORD).
*/}}
{{- define "usagefleet.natsConfig" -}}
{{- $c := .values -}}
{{- $n := dict "url" .root.Values.nats.url -}}
{{- if $c.nats.credsSecret -}}
{{- $_ := set $n "creds_file" (printf "/etc/usagefleet/nats-creds/%s" $c.nats.credsKey) -}}
{{- else -}}
{{- $_ := set $n "user" (required (printf "%s.nats.user: set a NATS user, or credsSecret" .component) $c.nats.user) -}}
{{- $_ := set $n "password" (dict "env" "NATS_PASSWORD") -}}
{{- end -}}
{{- if .root.Values.nats.tls.caSecret -}}
{{- $_ := set $n "tls" (dict "ca_file" (printf "/etc/usagefleet/nats-tls/%s" .root.Values.nats.tls.caKey)) -}}
{{- end -}}
{{- toYaml $n -}}
{{- end -}}

{{/* The environment: secrets by reference only, then plain settings. */}}
{{- define "usagefleet.env" -}}
{{- $c := .values -}}
{{- $secret := required (printf "%s.existingSecret: name the Secret that holds its credentials (deploy/README.md)" .component) $c.existingSecret -}}
{{- if not $c.nats.credsSecret }}
- name: NATS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret | quote }}, key: {{ $c.nats.passwordKey | quote }}}
{{- end }}
{{- range $c.secretEnv }}
- name: {{ . }}
  valueFrom:
    secretKeyRef: {name: {{ $secret | quote }}, key: {{ . | quote }}}
{{- end }}
# The Go runtime collects harder before the memory limit instead of
# being OOM-killed at it.
- name: GOMEMLIMIT
  value: {{ $c.goMemLimit | quote }}
{{- with .root.Values.otel.tracesEndpoint }}
- name: OTEL_TRACES_EXPORTER
  value: otlp
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: http/protobuf
- name: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with $c.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes every component mounts: its config, NATS creds and CA. */}}
{{- define "usagefleet.volumeMounts" -}}
- name: config
  mountPath: /etc/usagefleet/config
  readOnly: true
{{- if .values.nats.credsSecret }}
- name: nats-creds
  mountPath: /etc/usagefleet/nats-creds
  readOnly: true
{{- end }}
{{- if .root.Values.nats.tls.caSecret }}
- name: nats-tls
  mountPath: /etc/usagefleet/nats-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "usagefleet.volumes" -}}
- name: config
  configMap:
    name: {{ include "usagefleet.name" . }}
    items:
      - key: {{ .file }}
        path: {{ .file }}
{{- if .values.nats.credsSecret }}
- name: nats-creds
  secret:
    secretName: {{ .values.nats.credsSecret | quote }}
    defaultMode: 0400
    items:
      - key: {{ .values.nats.credsKey | quote }}
        path: {{ .values.nats.credsKey | quote }}
{{- end }}
{{- if .root.Values.nats.tls.caSecret }}
- name: nats-tls
  secret:
    secretName: {{ .root.Values.nats.tls.caSecret | quote }}
    items:
      - key: {{ .root.Values.nats.tls.caKey | quote }}
        path: {{ .root.Values.nats.tls.caKey | quote }}
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by every component. */}}
{{- define "usagefleet.podSpec" -}}
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ .values.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The probes on a named port: started and alive on /healthz, ready on /readyz. */}}
{{- define "usagefleet.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  periodSeconds: 2
  failureThreshold: {{ .startupFailures }}
livenessProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: {{ .port }}}
  periodSeconds: {{ .readyPeriod | default 10 }}
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}
