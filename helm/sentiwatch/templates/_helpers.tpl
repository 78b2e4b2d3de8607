{{/* Names and labels shared by every object of the release. */}}

{{- define "sentiwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sentiwatch.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "sentiwatch.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "sentiwatch.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sentiwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sentiwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sentiwatch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sentiwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sentiwatch
{{- end -}}

{{- define "sentiwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sentiwatch.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "sentiwatch.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (toString (default .default .image.tag)) -}}
{{- end -}}
{{- end -}}

{{/* The input topic's partition count: more consumers than partitions would sit idle. */}}
{{- define "sentiwatch.partitions" -}}
{{- .Values.config.topic_partitions | default 4 | int -}}
{{- end -}}

{{/* The Prometheus rule groups, from the one rules file (files/prometheus-rules.yml links to deploy/prometheus/rules.yml). */}}
{{- define "sentiwatch.ruleGroups" -}}
{{- $rules := .Files.Get "files/prometheus-rules.yml" | fromYaml -}}
{{- if not $rules.groups -}}
{{- fail "files/prometheus-rules.yml has no rule groups: it must link to deploy/prometheus/rules.yml" -}}
{{- end -}}
{{- toYaml $rules.groups -}}
{{- end -}}

{{- define "sentiwatch.saslEnabled" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end -}}
{{- end -}}

{{- define "sentiwatch.tlsEnabled" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") }}true{{ end -}}
{{- end -}}
