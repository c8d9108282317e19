{{/*
The name of the release's namespaced and per-install objects (ServiceAccount,
Deployment, Service, the operator's ClusterRole): the release name, or
`fullnameOverride`. The built-in roles, the admission policies and their
ConfigMap have fixed names the operator and the policies look for, so one
cluster holds one install.
*/}}
{{- define "workspace-operator.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object the chart installs. */}}
{{- define "workspace-operator.labels" -}}
app.kubernetes.io/name: workspace-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels that select the operator's pods. */}}
{{- define "workspace-operator.selectorLabels" -}}
app.kubernetes.io/name: workspace-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The operator's ServiceAccount. */}}
{{- define "workspace-operator.serviceAccountName" -}}
{{- default (include "workspace-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The username the API server authenticates the operator as. */}}
{{- define "workspace-operator.username" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "workspace-operator.serviceAccountName" . }}
{{- end -}}

{{/* The operator's image reference: a digest wins over a tag; the tag defaults to the chart's appVersion. */}}
{{- define "workspace-operator.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end -}}

{{/* The reserved namespaces: the release's own first, then the configured ones. */}}
{{- define "workspace-operator.reservedNamespaces" -}}
{{- $names := list .Release.Namespace -}}
{{- with .Values.directory.namespace -}}
{{- if not (has . $names) -}}
{{- $names = append $names . -}}
{{- end -}}
{{- end -}}
{{- range .Values.policy.reservedNamespaces -}}
{{- if not (has . $names) -}}
{{- $names = append $names . -}}
{{- end -}}
{{- end -}}
{{- join "," $names -}}
{{- end -}}
