{{/* Names, labels and the image: one definition each, used by every template. */}}

{{- define "killkrill.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-killkrill, or the release name when it contains the chart's name. */}}
{{- define "killkrill.fullname" -}}
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

{{/* The operator's objects: Deployment, Service, roles. */}}
{{- define "killkrill.operatorName" -}}
{{- printf "%s-operator" (include "killkrill.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "killkrill.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "killkrill.labels" -}}
helm.sh/chart: {{ include "killkrill.chart" . }}
app.kubernetes.io/name: {{ include "killkrill.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: killkrill
{{- end }}

{{/* The operator's labels, and the subset its Deployment selects pods by. */}}
{{- define "killkrill.operatorLabels" -}}
{{ include "killkrill.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "killkrill.selectorLabels" -}}
app.kubernetes.io/name: {{ include "killkrill.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "killkrill.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "killkrill.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "killkrill.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "killkrill.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "killkrill.imageTag" .) }}
{{- end }}

{{/* Whether the cluster (or `helm template --api-versions`) serves the Pipeline kind. */}}
{{- define "killkrill.pipelineKindKnown" -}}
{{- if or (.Capabilities.APIVersions.Has "killkrill.io/v1alpha1/Pipeline") (not .Values.crds.install) }}true{{ end }}
{{- end }}

{{/* The namespaces the operator watches ("" = every namespace), deduplicated. */}}
{{- define "killkrill.watchNamespaces" -}}
{{- .Values.operator.watchNamespaces | uniq | join "," }}
{{- end }}

{{/* The example Pipeline's namespace: pipeline.namespace, else the release's; it must be
watched. */}}
{{- define "killkrill.pipelineNamespace" -}}
{{- $ns := .Values.pipeline.namespace | default .Release.Namespace }}
{{- if and .Values.operator.watchNamespaces (not (has $ns .Values.operator.watchNamespaces)) }}
{{- fail (printf "pipeline.namespace %q is not among operator.watchNamespaces %v: the operator would never reconcile the example Pipeline" $ns .Values.operator.watchNamespaces) }}
{{- end }}
{{- $ns }}
{{- end }}
