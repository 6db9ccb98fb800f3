{{/*
Names are fixed, not derived from the release: the APIService v1beta1.external.metrics.k8s.io is
one per cluster, so the chart installs once, and fixed names keep `helm template` equal to
manifests/ object for object (a test checks it).
*/}}

{{- define "tgi-autoscaler.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}:{{ $tag }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}

{{- define "tgi-autoscaler.adapterLabels" -}}
app.kubernetes.io/component: external-metrics-adapter
app.kubernetes.io/name: tgi-autoscaler-adapter
app.kubernetes.io/part-of: tgi-autoscaler
{{- end -}}

{{- define "tgi-autoscaler.controllerLabels" -}}
app.kubernetes.io/component: controller
app.kubernetes.io/name: tgi-autoscaler-controller
app.kubernetes.io/part-of: tgi-autoscaler
{{- end -}}

{{- define "tgi-autoscaler.podPlacement" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
