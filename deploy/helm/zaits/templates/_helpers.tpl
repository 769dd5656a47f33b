{{/* Chart name, fullname and labels. */}}
{{- define "zaits.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "zaits.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway"). */}}
{{- define "zaits.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zaits.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "zaits.labels" -}}
{{ include "zaits.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "zaits.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "zaits.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "zaits.fullname" .)) -}}
{{- end -}}

{{/*
The components, and which secret keys each one reads (required: the pod does
not start without it; optional: an empty value when the key is absent).
*/}}
{{- define "zaits.components" -}}
gateway:
  required: [ZAITS_ENDPOINTS_ENCRYPTION_KEY]
  optional: [ZAITS_GATEWAY_API_KEYS, ZAITS_GATEWAY_SERVICE_TOKENS, ZAITS_CLICKHOUSE_PASSWORD]
router:
  required: [ZAITS_ENDPOINTS_ENCRYPTION_KEY]
  optional: []
dispatcher:
  required: [ZAITS_ENDPOINTS_ENCRYPTION_KEY]
  optional: []
analytics:
  required: []
  optional: [ZAITS_CLICKHOUSE_PASSWORD]
{{- end -}}
