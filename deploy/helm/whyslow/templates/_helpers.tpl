{{/* Chart name, truncated to the 63 characters Kubernetes allows. */}}
{{- define "whyslow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart unless the release name already contains the chart name. */}}
{{- define "whyslow.fullname" -}}
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

{{- define "whyslow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "whyslow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "whyslow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "whyslow.labels" -}}
helm.sh/chart: {{ include "whyslow.chart" . }}
{{ include "whyslow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "whyslow.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Listen host of the OTLP receivers: the pod's loopback in sidecar mode (only the collector next to it sends),
     every interface otherwise. */}}
{{- define "whyslow.otlpGrpcAddress" -}}
{{- if .Values.sidecar.enabled }}{{ printf "127.0.0.1:%v" .Values.sidecar.otlpGrpcPort }}{{ else }}{{ printf "0.0.0.0:%v" .Values.ports.otlpGrpc }}{{ end }}
{{- end }}
{{- define "whyslow.otlpHttpAddress" -}}
{{- if .Values.sidecar.enabled }}{{ printf "127.0.0.1:%v" .Values.sidecar.otlpHttpPort }}{{ else }}{{ printf "0.0.0.0:%v" .Values.ports.otlpHttp }}{{ end }}
{{- end }}

{{/* The whyslow container, shared by the Deployment and the sidecar snippet. */}}
{{- define "whyslow.container" -}}
name: whyslow
image: {{ include "whyslow.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
envFrom:
  - configMapRef:
      name: {{ include "whyslow.fullname" . }}
env:
  - name: WHYSLOW_OTLP_GRPC
    value: {{ include "whyslow.otlpGrpcAddress" . | quote }}
  - name: WHYSLOW_OTLP_HTTP
    value: {{ include "whyslow.otlpHttpAddress" . | quote }}
  - name: WHYSLOW_HTTP
    value: {{ printf "0.0.0.0:%v" .Values.ports.http | quote }}
  - name: WHYSLOW_GRPC
    value: {{ printf "0.0.0.0:%v" .Values.ports.grpc | quote }}
  {{- if .Values.auth.existingSecret }}
  - name: WHYSLOW_AUTH_TOKEN
    valueFrom:
      secretKeyRef:
        name: {{ .Values.auth.existingSecret }}
        key: {{ .Values.auth.secretKey }}
  {{- end }}
  {{- if .Values.clickhouse.store }}
  - name: WHYSLOW_STORE
    value: {{ .Values.clickhouse.store | quote }}
  - name: WHYSLOW_REPLICA
    value: {{ printf "pod/%v" .Values.replicaCount | quote }}
  - name: WHYSLOW_MODEL_KEY_FILE
    value: {{ printf "/etc/whyslow/model-key/%s" .Values.clickhouse.modelKey.secretKey | quote }}
  {{- if .Values.clickhouse.passwordSecret }}
  - name: CLICKHOUSE_PASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ .Values.clickhouse.passwordSecret }}
        key: {{ .Values.clickhouse.passwordKey }}
  {{- end }}
  {{- end }}
  {{- if .Values.clickhouse.pull }}
  - name: WHYSLOW_SOURCE
    value: clickhouse
  - name: WHYSLOW_SOURCE_TABLE
    value: {{ .Values.clickhouse.sourceTable | quote }}
  - name: WHYSLOW_SOURCE_LAG_S
    value: {{ .Values.clickhouse.sourceLagS | quote }}
  {{- if .Values.clickhouse.sourceUrl }}
  - name: WHYSLOW_SOURCE_URL
    value: {{ .Values.clickhouse.sourceUrl | quote }}
  {{- end }}
  {{- end }}
  {{- if .Values.auth.grafanaTokenSecret }}
  - name: WHYSLOW_GRAFANA_TOKEN
    valueFrom:
      secretKeyRef:
        name: {{ .Values.auth.grafanaTokenSecret }}
        key: {{ .Values.auth.grafanaTokenKey }}
  {{- end }}
ports:
  {{- if not .Values.sidecar.enabled }}
  - name: otlp-grpc
    containerPort: {{ .Values.ports.otlpGrpc }}
    protocol: TCP
  - name: otlp-http
    containerPort: {{ .Values.ports.otlpHttp }}
    protocol: TCP
  {{- end }}
  - name: http
    containerPort: {{ .Values.ports.http }}
    protocol: TCP
  - name: grpc
    containerPort: {{ .Values.ports.grpc }}
    protocol: TCP
livenessProbe:
  {{- toYaml .Values.livenessProbe | nindent 2 }}
readinessProbe:
  {{- toYaml .Values.readinessProbe | nindent 2 }}
resources:
  {{- toYaml .Values.resources | nindent 2 }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: whyslow-data
    mountPath: /data
  - name: whyslow-tmp
    mountPath: /tmp
  {{- if .Values.clickhouse.store }}
  - name: whyslow-model-key
    mountPath: /etc/whyslow/model-key
    readOnly: true
  {{- end }}
{{- end }}

{{/* The Secret holding the model key replicas share: the user's, or the one the chart generates. */}}
{{- define "whyslow.modelKeySecret" -}}
{{- .Values.clickhouse.modelKey.existingSecret | default (printf "%s-model-key" (include "whyslow.fullname" .)) }}
{{- end }}

{{/* Volumes the container mounts: the data dir (PVC or emptyDir), a writable /tmp and, with a ClickHouse store,
     the model key the replicas share (read-only, outside the data dir). */}}
{{- define "whyslow.volumes" -}}
- name: whyslow-data
  {{- if and .Values.persistence.enabled (not .Values.sidecar.enabled) }}
  persistentVolumeClaim:
    claimName: {{ .Values.persistence.existingClaim | default (include "whyslow.fullname" .) }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ .Values.emptyDir.sizeLimit }}
  {{- end }}
- name: whyslow-tmp
  emptyDir:
    medium: Memory
    sizeLimit: 64Mi
{{- if .Values.clickhouse.store }}
- name: whyslow-model-key
  secret:
    secretName: {{ include "whyslow.modelKeySecret" . }}
    defaultMode: 0440
    items:
      - key: {{ .Values.clickhouse.modelKey.secretKey }}
        path: {{ .Values.clickhouse.modelKey.secretKey }}
{{- end }}
{{- end }}
