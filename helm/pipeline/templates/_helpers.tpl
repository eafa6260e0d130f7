{{/* Names are cut to 63 characters: the limit of a DNS label and of a label value. */}}

{{- define "pipeline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pipeline.fullname" -}}
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

{{/* The full name with a suffix ("agent", "topics"), still at most 63 characters. */}}
{{- define "pipeline.suffixedName" -}}
{{- $max := sub 62 (len .suffix) | int }}
{{- printf "%s-%s" (include "pipeline.fullname" .root | trunc $max | trimSuffix "-") .suffix }}
{{- end }}

{{- define "pipeline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pipeline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pipeline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pipeline.labels" -}}
helm.sh/chart: {{ include "pipeline.chart" . }}
{{ include "pipeline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "pipeline.name" . }}
{{- end }}

{{/* Labels of one service's objects; call with (dict "root" $ "component" "agent"). */}}
{{- define "pipeline.componentSelectorLabels" -}}
{{ include "pipeline.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "pipeline.componentLabels" -}}
{{ include "pipeline.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "pipeline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pipeline.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pipeline.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
One service's settings: serviceDefaults overlaid key by key with its entry in `services`.
Maps merge recursively; any other value (false and 0 included) replaces the default.
Call with (dict "base" .Values.serviceDefaults "over" $entry); returns YAML.
*/}}
{{- define "pipeline.overlay" -}}
{{- $out := deepCopy .base }}
{{- range $key, $value := .over }}
{{- $current := get $out $key }}
{{- if and (kindIs "map" $value) (kindIs "map" $current) }}
{{- $_ := set $out $key (include "pipeline.overlay" (dict "base" $current "over" $value) | fromYaml) }}
{{- else }}
{{- $_ := set $out $key $value }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{- define "pipeline.serviceConfig" -}}
{{- include "pipeline.overlay" (dict "base" .root.Values.serviceDefaults "over" (omit .entry "enabled")) }}
{{- end }}

{{/* PIPELINE_KAFKA__SASL_USERNAME for the librdkafka setting sasl.username. */}}
{{- define "pipeline.kafkaEnvName" -}}
{{- printf "PIPELINE_KAFKA__%s" (. | upper | replace "." "_") }}
{{- end }}

{{/* Environment every pipeline container gets: brokers, prefix, client settings. */}}
{{- define "pipeline.kafkaEnv" -}}
- name: PIPELINE_BOOTSTRAP_SERVERS
  value: {{ required "kafka.bootstrapServers is required" .Values.kafka.bootstrapServers | quote }}
- name: PIPELINE_TOPIC_PREFIX
  value: {{ .Values.kafka.topicPrefix | quote }}
- name: PIPELINE_LOG_LEVEL
  value: {{ .Values.settings.logLevel | quote }}
{{- range $setting, $value := .Values.kafka.config }}
- name: {{ include "pipeline.kafkaEnvName" $setting }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- range .Values.kafka.secretConfig }}
- name: {{ include "pipeline.kafkaEnvName" .setting }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
{{- end }}
{{- end }}

{{- define "pipeline.webhookRulesPath" -}}
/etc/pipeline/webhooks/rules.yaml
{{- end }}

{{- define "pipeline.knowledgePath" -}}
/etc/pipeline/knowledge/knowledge.yaml
{{- end }}
