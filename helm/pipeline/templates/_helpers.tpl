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

{{/* The services `pipeline run NAME` knows; any other entry of `services` is your own. */}}
{{- define "pipeline.builtinServices" -}}
{{- list "gateway" "agent" "tools" "delivery" "scheduler" "webhooks" "console" "echo" | toJson }}
{{- end }}

{{/* "true" when an entry of `services` is deployed: `enabled` unset (own services) or true. */}}
{{- define "pipeline.enabled" -}}
{{- if or (not (hasKey . "enabled")) .enabled }}true{{ end }}
{{- end }}

{{/*
Checks one entry of `services`; call with (dict "name" $name "entry" $entry). A built-in
service runs as `pipeline run NAME`; your own needs `run` (module:attr) or `command`.
*/}}
{{- define "pipeline.checkService" -}}
{{- $builtin := has .name (include "pipeline.builtinServices" . | fromJsonArray) }}
{{- $own := or .entry.run .entry.command }}
{{- if and $builtin $own }}
{{- fail (printf "services.%s: a built-in service runs as `pipeline run %s`; give your own service (run/command) a name of its own" .name .name) }}
{{- end }}
{{- if and (not $builtin) (not $own) }}
{{- fail (printf "services.%s is not a built-in service (%s): your own service needs `run: module:attr` (or `command`)" .name (include "pipeline.builtinServices" . | fromJsonArray | join ", ")) }}
{{- end }}
{{- if and .entry.run .entry.command }}
{{- fail (printf "services.%s: set `run` or `command`, not both" .name) }}
{{- end }}
{{- end }}

{{/*
One service's image: its own `image` when it names a repository (your agent's image), else
the chart's `image`. Call with (dict "root" $ "entry" $entry).
*/}}
{{- define "pipeline.serviceImage" -}}
{{- $own := .entry.image | default dict }}
{{- $image := ternary $own .root.Values.image (hasKey $own "repository") }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{- define "pipeline.servicePullPolicy" -}}
{{- (.entry.image | default dict).pullPolicy | default .root.Values.image.pullPolicy }}
{{- end }}

{{/* Where schemas.extraFiles are mounted in every service and the topics Job. */}}
{{- define "pipeline.extraSchemasPath" -}}
/etc/pipeline/extra-schemas
{{- end }}

{{/* PIPELINE_EXTRA_SCHEMA_DIRS and PIPELINE_EXTRA_TOPIC_DIRS for every container. */}}
{{- define "pipeline.extraDirsEnv" -}}
{{- $schemaDirs := .Values.schemas.extraDirs }}
{{- if .Values.schemas.extraFiles }}
{{- $schemaDirs = prepend $schemaDirs (include "pipeline.extraSchemasPath" .) }}
{{- end }}
{{- with $schemaDirs }}
- name: PIPELINE_EXTRA_SCHEMA_DIRS
  value: {{ join ":" . | quote }}
{{- end }}
{{- with .Values.topics.extraDirs }}
- name: PIPELINE_EXTRA_TOPIC_DIRS
  value: {{ join ":" . | quote }}
{{- end }}
{{- end }}

{{- define "pipeline.extraSchemasVolumeMount" -}}
{{- if .Values.schemas.extraFiles }}
- name: extra-schemas
  mountPath: {{ include "pipeline.extraSchemasPath" . }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "pipeline.extraSchemasVolume" -}}
{{- if .Values.schemas.extraFiles }}
- name: extra-schemas
  configMap:
    name: {{ include "pipeline.suffixedName" (dict "root" . "suffix" "schemas") }}
{{- end }}
{{- end }}

{{/*
Fails the render when a topic of topics.extraDefinitions names a value schema that the
services and the topics Job cannot see: neither bundled (schemas/) nor in
schemas.extraFiles. Schemas in the image (schemas.extraDirs) cannot be checked here.
*/}}
{{- define "pipeline.checkTopicSchemas" -}}
{{- if not .Values.schemas.extraDirs }}
{{- range $file, $content := .Values.topics.extraDefinitions }}
{{- $topic := fromYaml $content }}
{{- with $topic.value_schema }}
{{- $avsc := printf "%s.avsc" . }}
{{- if not (or ($.Files.Get (printf "files/schemas/%s" $avsc)) (hasKey $.Values.schemas.extraFiles $avsc)) }}
{{- fail (printf "topics.extraDefinitions.%s: value_schema %s is in no schema the services and the topics Job see: add %s to schemas.extraFiles, or name the image's schema folder in schemas.extraDirs" $file . $avsc) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
