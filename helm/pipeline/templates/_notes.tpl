{{/* The text of NOTES.txt, a named template so that tests can render it with `helm template`. */}}
{{- define "pipeline.notes" -}}
{{- $fullname := include "pipeline.fullname" . -}}
The pipeline is deployed as release {{ .Release.Name }} in namespace {{ .Release.Namespace }}.

Kafka: {{ .Values.kafka.bootstrapServers }}{{ with .Values.kafka.topicPrefix }} (topic prefix "{{ . }}"){{ end }}
{{- if .Values.topics.provision }}
Topics: the hook Job {{ include "pipeline.suffixedName" (dict "root" $ "suffix" "topics") }} runs `pipeline topics apply` after every install and upgrade.
{{- else }}
Topics: not provisioned by the chart (topics.provision=false); run `pipeline topics apply` yourself.
{{- end }}

Services:
{{- range $name, $entry := .Values.services }}
{{- if include "pipeline.enabled" $entry }}
  - {{ $name }}: deployment/{{ include "pipeline.suffixedName" (dict "root" $ "suffix" $name) }}
{{- end }}
{{- end }}

Watch them come up:
  kubectl --namespace {{ .Release.Namespace }} get pods -l app.kubernetes.io/instance={{ .Release.Name }} -w
{{- if .Values.services.gateway.enabled }}
{{ if .Values.gateway.ingress.enabled }}
The gateway answers at:
{{- range .Values.gateway.ingress.hosts }}
  http{{ if $.Values.gateway.ingress.tls }}s{{ end }}://{{ .host }}
{{- end }}
{{- else }}
Reach the gateway:
  kubectl --namespace {{ .Release.Namespace }} port-forward service/{{ include "pipeline.suffixedName" (dict "root" $ "suffix" "gateway") }} 8080:{{ .Values.gateway.service.port }}
{{- end }}
{{- end }}

{{- if include "pipeline.enabled" .Values.services.console }}
{{- $console := include "pipeline.suffixedName" (dict "root" $ "suffix" "console") }}

The operator console:
{{- if .Values.console.ingress.enabled }}
{{- range .Values.console.ingress.hosts }}
  http{{ if $.Values.console.ingress.tls }}s{{ end }}://{{ .host }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.consoleFrom) }}
  WARNING: networkPolicy.consoleFrom is empty, so the console's NetworkPolicy admits no one
  and the Ingress cannot reach it: name the ingress controller's namespace there.
{{- end }}
{{- else }}
  kubectl --namespace {{ .Release.Namespace }} port-forward service/{{ $console }} 8090:{{ .Values.console.service.port }}
  then http://127.0.0.1:8090 (with console.cookieSecure=false over plain HTTP), or set
  console.ingress.enabled=true and name the ingress controller in networkPolicy.consoleFrom.
{{- end }}
{{- if .Values.console.existingSecret }}
  Operators sign in with the passwords of the Secret {{ .Values.console.existingSecret }} (operators.json).
{{- else }}
  WARNING: console.existingSecret is not set, so nobody can sign in. Make the Secret:
    pipeline console hash-password        # prints scrypt$...; single-quote it in a shell
    echo '{"ada": {"password_hash": "scrypt$..."}}' > operators.json
    kubectl --namespace {{ .Release.Namespace }} create secret generic {{ $console }}-operators \
      --from-file=operators.json --from-literal=session-secret="$(openssl rand -hex 32)"
  and upgrade with --set console.existingSecret={{ $console }}-operators
{{- end }}
{{- end }}

Metrics: every service serves /metrics, /healthz and /readyz on port {{ .Values.settings.metricsPort }}.
{{- if not .Values.metrics.serviceMonitor.enabled }}
  Set metrics.serviceMonitor.enabled=true to have the Prometheus Operator scrape them.
{{- end }}
{{- if not .Values.metrics.prometheusRule.enabled }}
  Set metrics.prometheusRule.enabled=true to install the alert rules.
{{- end }}
{{- if not .Values.metrics.dashboard.enabled }}
  Set metrics.dashboard.enabled=true to ship the Grafana dashboard to Grafana's sidecar.
{{- end }}
{{- if .Values.tests.enabled }}

Check the release: helm test {{ .Release.Name }} --namespace {{ .Release.Namespace }}
{{- end }}
{{- end }}
