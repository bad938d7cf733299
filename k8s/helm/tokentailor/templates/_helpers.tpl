{{/*
Name prefix of every object: fullnameOverride, else the release name when it
already holds the chart name (release "tokentailor" ⇒ "tokentailor"), else
release-chart. Kubernetes names are at most 63 characters.
*/}}
{{- define "tokentailor.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The webhook's Deployment, Service, ServiceAccount, PDB, NetworkPolicy. */}}
{{- define "tokentailor.webhookName" -}}
{{- printf "%s-webhook" (include "tokentailor.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The Secret with the webhook's serving certificate. */}}
{{- define "tokentailor.tlsSecret" -}}
{{- if and (not .Values.certManager.enabled) .Values.tls.existingSecret -}}
{{- .Values.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-tls" (include "tokentailor.webhookName" .) -}}
{{- end -}}
{{- end -}}

{{/* The image of the webhook (and by default of the injected tokentailor). */}}
{{- define "tokentailor.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Selector labels: the same as the kustomize manifests'. */}}
{{- define "tokentailor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tokentailor.webhookName" . }}
{{- end -}}

{{/* Labels of the webhook's objects. */}}
{{- define "tokentailor.labels" -}}
{{ include "tokentailor.selectorLabels" . }}
{{ include "tokentailor.commonLabels" . }}
{{- end -}}

{{/* Labels of every object of the release. */}}
{{- define "tokentailor.commonLabels" -}}
app.kubernetes.io/part-of: tokentailor
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/*
clientConfig of both webhook configurations: the webhook Service, and the CA
unless cert-manager's CA injector fills it. Call with (dict "root" $ "path"
"/mutate" "caBundle" $caBundle).
*/}}
{{- define "tokentailor.clientConfig" -}}
service:
  name: {{ include "tokentailor.webhookName" .root }}
  namespace: {{ .root.Release.Namespace }}
  path: {{ .path }}
  port: 443
{{- with .caBundle }}
caBundle: {{ . }}
{{- end }}
{{- end -}}

{{/* Annotations of both webhook configurations. */}}
{{- define "tokentailor.webhookAnnotations" -}}
{{- if .Values.certManager.enabled }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "tokentailor.webhookName" . }}
{{- end }}
{{- end -}}
