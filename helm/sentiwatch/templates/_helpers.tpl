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

{{/* The alert sink's pods: another name label, so the worker's selectors never match them. */}}
{{- define "sentiwatch.alertsSinkSelectorLabels" -}}
app.kubernetes.io/name: {{ include "sentiwatch.name" . }}-alerts-sink
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sentiwatch.alertsSinkLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sentiwatch.alertsSinkSelectorLabels" . }}
app.kubernetes.io/component: alerts-sink
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

{{/* A dashboard's Grafana uid: unique per release and namespace (Grafana allows 40 characters), so two
releases' dashboards never overwrite each other. The files' own uids are sentiwatch-<name>. */}}
{{- define "sentiwatch.dashboardUid" -}}
{{- printf "%s-%s" (include "sentiwatch.fullname" .root) .root.Release.Namespace | trunc 30 | trimSuffix "-" -}}-{{ .name }}
{{- end -}}

{{/* The selector that scopes every rule to this release: the ServiceMonitor's job is the Service's name. */}}
{{- define "sentiwatch.ruleSelector" -}}
{{- printf "namespace=%q, job=%q" .Release.Namespace (include "sentiwatch.fullname" .) -}}
{{- end -}}

{{/* The Prometheus rule groups of deploy/prometheus/rules.yml (files/prometheus-rules.yml links to it), made this
release's: `job="sentiwatch"` becomes the release's selector, the broker's lag is read for this release's consumer
group and input topic, dashboard links use this release's uids, and prometheusRule.rules overrides each alert
(disabled, threshold, for, severity, labels, annotations) the way kube-prometheus-stack's defaultRules do. */}}
{{- define "sentiwatch.ruleGroups" -}}
{{- $file := .Files.Get "files/prometheus-rules.yml" | fromYaml -}}
{{- if not $file.groups -}}
{{- fail "files/prometheus-rules.yml has no rule groups: it must link to deploy/prometheus/rules.yml" -}}
{{- end -}}
{{- $values := .Values.prometheusRule -}}
{{- $selector := include "sentiwatch.ruleSelector" . -}}
{{- $broker := printf "consumergroup=%q, topic=%q" (.Values.config.consumer_group | default "sentiwatch") (.Values.config.input_topic | default "sentiwatch.texts") -}}
{{- with $values.brokerLagSelector }}{{ $broker = printf "%s, %s" $broker . }}{{ end -}}
{{- $links := dict "/d/sentiwatch-topics/" (printf "/d/%s/" (include "sentiwatch.dashboardUid" (dict "root" . "name" "topics"))) "/d/sentiwatch-pipeline/" (printf "/d/%s/" (include "sentiwatch.dashboardUid" (dict "root" . "name" "pipeline"))) -}}
{{- $defaultRunbook := "https://github.com/sentiwatch/sentiwatch/blob/main/deploy/prometheus/RUNBOOK.md" -}}
{{- $alerts := list -}}
{{- $groups := list -}}
{{- range $group := $file.groups -}}
{{- $rules := list -}}
{{- range $original := $group.rules -}}
{{- $rule := deepCopy $original -}}
{{- $expr := $rule.expr | replace "job=\"sentiwatch\"" $selector | replace "consumergroup=\"sentiwatch\", topic=\"sentiwatch.texts\"" $broker -}}
{{- if $rule.record -}}
{{- if $rule.labels -}}
{{- $_ := set $rule "labels" (merge (dict "namespace" $.Release.Namespace "job" (include "sentiwatch.fullname" $)) (omit $rule.labels "job")) -}}
{{- end -}}
{{- $_ := set $rule "expr" $expr -}}
{{- $rules = append $rules $rule -}}
{{- else -}}
{{- $alerts = append $alerts $rule.alert -}}
{{- $override := get ($values.rules | default dict) $rule.alert | default dict -}}
{{- if not $override.disabled -}}
{{- $annotations := $rule.annotations | default dict -}}
{{- if hasKey $override "threshold" -}}
{{- if not (hasKey $annotations "threshold") -}}
{{- fail (printf "prometheusRule.rules.%s.threshold: this alert has no single threshold to override" $rule.alert) -}}
{{- end -}}
{{- $pattern := printf "(^|[^0-9.])%s([^0-9.]|$)" (regexQuoteMeta $annotations.threshold) -}}
{{- $with := printf "${1}%v${2}" $override.threshold -}}
{{- if not (regexMatch $pattern $expr) -}}
{{- fail (printf "prometheusRule.rules.%s.threshold: %s not found in the rule's expression" $rule.alert $annotations.threshold) -}}
{{- end -}}
{{- $expr = regexReplaceAll $pattern $expr $with -}}
{{- range $key := list "summary" "description" -}}
{{- if hasKey $annotations $key -}}
{{- $_ := set $annotations $key (regexReplaceAll $pattern (get $annotations $key) $with) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $annotations "threshold" (toString $override.threshold) -}}
{{- end -}}
{{- range $from, $to := $links -}}
{{- if hasKey $annotations "dashboard" -}}
{{- $_ := set $annotations "dashboard" (replace $from $to $annotations.dashboard) -}}
{{- end -}}
{{- end -}}
{{- with $values.runbookUrlPrefix -}}
{{- $_ := set $annotations "runbook_url" (replace $defaultRunbook (trimSuffix "/" .) $annotations.runbook_url) -}}
{{- end -}}
{{- $labels := merge (dict) ($override.labels | default dict) ($values.additionalRuleLabels | default dict) $rule.labels -}}
{{- with $override.severity }}{{ $_ := set $labels "severity" . }}{{ end -}}
{{- $_ := set $rule "labels" $labels -}}
{{- $_ := set $rule "annotations" (merge (dict) ($override.annotations | default dict) ($values.additionalRuleAnnotations | default dict) $annotations) -}}
{{- with $override.for }}{{ $_ := set $rule "for" . }}{{ end -}}
{{- $_ := set $rule "expr" $expr -}}
{{- $rules = append $rules $rule -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $rules -}}
{{- $groups = append $groups (merge (dict "rules" $rules) (omit $group "rules")) -}}
{{- end -}}
{{- end -}}
{{- range $name, $_ := $values.rules -}}
{{- if not (has $name $alerts) -}}
{{- fail (printf "prometheusRule.rules.%s: no such alert; the alerts are %s" $name (join ", " $alerts)) -}}
{{- end -}}
{{- end -}}
{{- toYaml $groups -}}
{{- end -}}

{{/* The Strimzi KafkaUser's name, which is also the SASL username and the name of the Secret Strimzi writes. */}}
{{- define "sentiwatch.kafkaUser" -}}
{{- .Values.strimzi.user.name | default (include "sentiwatch.fullname" .) -}}
{{- end -}}

{{/* Where the Kafka credentials come from, as JSON (fromJson it): the kafka.* values, else what Strimzi writes for
strimzi.user (a Secret named like the KafkaUser: `password` for SCRAM, `user.crt`/`user.key` for TLS; the username is
the KafkaUser's name) and strimzi.cluster (the cluster CA in <cluster>-cluster-ca-cert, key ca.crt). */}}
{{- define "sentiwatch.kafkaAuth" -}}
{{- $k := .Values.kafka -}}
{{- $s := .Values.strimzi -}}
{{- $user := include "sentiwatch.kafkaUser" . -}}
{{- $scram := and $s.user.enabled (hasPrefix "scram" $s.user.authentication) -}}
{{- $mtls := and $s.user.enabled (eq $s.user.authentication "tls") -}}
{{- $strimziCa := and $s.cluster (or $s.user.enabled $s.topics.enabled) | empty | not -}}
{{- $certSecret := $k.tls.clientCertSecret | default (ternary $user "" $mtls) -}}
{{- if and (not $certSecret) $k.tls.certKey -}}{{- $certSecret = $k.tls.existingSecret -}}{{- end -}}
{{- toJson (dict
  "saslSecret" ($k.sasl.existingSecret | default (ternary $user "" $scram))
  "username" ($k.sasl.username | default (ternary $user "" $scram))
  "usernameKey" $k.sasl.usernameKey
  "passwordKey" $k.sasl.passwordKey
  "caSecret" ($k.tls.existingSecret | default (ternary (printf "%s-cluster-ca-cert" $s.cluster) "" $strimziCa))
  "caKey" $k.tls.caKey
  "certSecret" $certSecret
  "certKey" ($k.tls.certKey | default (ternary "user.crt" "" $mtls))
  "keyKey" ($k.tls.keyKey | default (ternary "user.key" "" $mtls))) -}}
{{- end -}}

{{- define "sentiwatch.saslEnabled" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end -}}
{{- end -}}

{{- define "sentiwatch.tlsEnabled" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") }}true{{ end -}}
{{- end -}}

{{/* The Kafka connection of a pod (the worker, the alert sink): environment, mounts and Secret volumes. */}}
{{- define "sentiwatch.kafkaEnv" -}}
{{- $sasl := include "sentiwatch.saslEnabled" . -}}
{{- $tls := include "sentiwatch.tlsEnabled" . -}}
{{- $auth := include "sentiwatch.kafkaAuth" . | fromJson }}
- name: SENTIWATCH_KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
{{- if $sasl }}
- name: SENTIWATCH_KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
- name: SENTIWATCH_KAFKA_SASL_USERNAME
  {{- if $auth.username }}
  value: {{ $auth.username | quote }}
  {{- else }}
  valueFrom:
    secretKeyRef:
      name: {{ $auth.saslSecret }}
      key: {{ $auth.usernameKey }}
  {{- end }}
# A file in a mounted Secret: the kubelet updates it when the Secret changes (rotation).
- name: SENTIWATCH_KAFKA_SASL_PASSWORD_FILE
  value: /var/run/secrets/sentiwatch/kafka-sasl/password
{{- end }}
{{- if and $tls $auth.caSecret }}
- name: SENTIWATCH_KAFKA_SSL_CAFILE
  value: /var/run/secrets/sentiwatch/kafka-tls/ca.crt
{{- end }}
{{- if and $tls $auth.certSecret }}
- name: SENTIWATCH_KAFKA_SSL_CERTFILE
  value: /var/run/secrets/sentiwatch/kafka-client/tls.crt
- name: SENTIWATCH_KAFKA_SSL_KEYFILE
  value: /var/run/secrets/sentiwatch/kafka-client/tls.key
{{- end }}
{{- end -}}

{{- define "sentiwatch.kafkaMounts" -}}
{{- $sasl := include "sentiwatch.saslEnabled" . -}}
{{- $tls := include "sentiwatch.tlsEnabled" . -}}
{{- $auth := include "sentiwatch.kafkaAuth" . | fromJson }}
{{- if $sasl }}
- name: kafka-sasl
  mountPath: /var/run/secrets/sentiwatch/kafka-sasl
  readOnly: true
{{- end }}
{{- if and $tls $auth.caSecret }}
- name: kafka-tls
  mountPath: /var/run/secrets/sentiwatch/kafka-tls
  readOnly: true
{{- end }}
{{- if and $tls $auth.certSecret }}
- name: kafka-client
  mountPath: /var/run/secrets/sentiwatch/kafka-client
  readOnly: true
{{- end }}
{{- end -}}

{{- define "sentiwatch.kafkaVolumes" -}}
{{- $sasl := include "sentiwatch.saslEnabled" . -}}
{{- $tls := include "sentiwatch.tlsEnabled" . -}}
{{- $auth := include "sentiwatch.kafkaAuth" . | fromJson }}
{{- if $sasl }}
- name: kafka-sasl
  secret:
    secretName: {{ $auth.saslSecret }}
    defaultMode: 0440
    items:
      - key: {{ $auth.passwordKey }}
        path: password
{{- end }}
{{- if and $tls $auth.caSecret }}
- name: kafka-tls
  secret:
    secretName: {{ $auth.caSecret }}
    defaultMode: 0440
    items:
      - key: {{ $auth.caKey }}
        path: ca.crt
{{- end }}
{{- if and $tls $auth.certSecret }}
- name: kafka-client
  secret:
    secretName: {{ $auth.certSecret }}
    defaultMode: 0440
    items:
      - key: {{ required "kafka.tls.certKey: a client certificate Secret needs the certificate's key" $auth.certKey }}
        path: tls.crt
      - key: {{ required "kafka.tls.keyKey: a client certificate needs its key" $auth.keyKey }}
        path: tls.key
{{- end }}
{{- end -}}
