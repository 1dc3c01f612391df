{{- define "sytq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sytq.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "sytq.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "sytq.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sytq.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "sytq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: syt-queue
{{- end -}}

{{/* selectorLabels: call with (dict "ctx" $ "component" "api") */}}
{{- define "sytq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sytq.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sytq.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- define "sytq.secretName" -}}
{{- default (printf "%s-secrets" (include "sytq.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "sytq.watchNamespaces" -}}
{{- if .Values.controller.watchNamespaces -}}
{{- join "," .Values.controller.watchNamespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "sytq.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
volumes:
  - name: tmp
    emptyDir: {}
{{- with .Values.redisTLS.caSecret.name }}
  - name: redis-ca
    secret:
      secretName: {{ . }}
      items:
        - {key: {{ $.Values.redisTLS.caSecret.key }}, path: ca.crt}
{{- end }}
{{- end -}}

{{/* Where redisTLS.caSecret is mounted (controller/deployment.py REDIS_CA_DIR for pool workers). */}}
{{- define "sytq.redisCaPath" -}}/etc/sytq/redis-ca/ca.crt{{- end -}}

{{/* The container's mounts: /tmp, and the Redis CA when redisTLS.caSecret is set. */}}
{{- define "sytq.volumeMounts" -}}
volumeMounts:
  - {name: tmp, mountPath: /tmp}
{{- if .Values.redisTLS.caSecret.name }}
  - {name: redis-ca, mountPath: /etc/sytq/redis-ca, readOnly: true}
{{- end }}
{{- end -}}

{{/* secrets.redisUrl, with ssl_ca_certs pointing at the mounted redisTLS.caSecret when that is set. */}}
{{- define "sytq.redisUrl" -}}
{{- $url := required "secrets.redisUrl is required (or set secrets.existingSecret)" .Values.secrets.redisUrl -}}
{{- if .Values.redisTLS.caSecret.name -}}
{{- $path := include "sytq.redisCaPath" . -}}
{{- if not (hasPrefix "rediss" $url) -}}
{{- fail "redisTLS.caSecret needs TLS: secrets.redisUrl must be a rediss…:// URL" -}}
{{- end -}}
{{- $named := include "sytq.urlParam" (dict "url" $url "name" "ssl_ca_certs") -}}
{{- if not $named -}}
{{- $url = printf "%s%sssl_ca_certs=%s" $url (ternary "&" "?" (contains "?" $url)) $path -}}
{{- else if ne $named $path -}}
{{- fail (printf "secrets.redisUrl names ssl_ca_certs=%s, but redisTLS.caSecret is mounted at %s: drop ssl_ca_certs from the URL (the chart adds it) or leave redisTLS.caSecret empty" $named $path) -}}
{{- end -}}
{{- end -}}
{{- $url -}}
{{- end -}}

{{- define "sytq.deepseekUrl" -}}https://api.deepseek.com{{- end -}}

{{/* "true" when the release runs the stub LLM (stubLLM.enabled: auto / true / false; see values.yaml), else "". */}}
{{- define "sytq.stubLLM.enabled" -}}
{{- if eq (toString .Values.stubLLM.enabled) "auto" -}}
{{- $baseUrl := get .Values.config "SYTQ_LLM_BASE_URL" | default (include "sytq.deepseekUrl" .) | toString | trimSuffix "/" -}}
{{- if and (not .Values.secrets.deepseekApiKey) (not .Values.secrets.existingSecret) (eq $baseUrl (include "sytq.deepseekUrl" .)) -}}
true
{{- end -}}
{{- else if .Values.stubLLM.enabled -}}
true
{{- end -}}
{{- end -}}

{{- define "sytq.stubLLM.url" -}}
http://{{ include "sytq.fullname" . }}-stub-llm.{{ .Release.Namespace }}.svc:{{ .Values.stubLLM.port }}
{{- end -}}

{{/* The LLM endpoint the workers call. */}}
{{- define "sytq.llmBaseUrl" -}}
{{- if include "sytq.stubLLM.enabled" . -}}
{{- include "sytq.stubLLM.url" . -}}
{{- else -}}
{{- get .Values.config "SYTQ_LLM_BASE_URL" | default (include "sytq.deepseekUrl" .) -}}
{{- end -}}
{{- end -}}

{{/* The LLMWorkerPool policy (controller/pool_policy.py; admission.yaml): each list is the chart's own
     objects, what workerPool.extraEnv / extraEnvFrom name, and workerPool.policy.*; comma-separated. */}}
{{- define "sytq.poolPolicy.images" -}}
{{- concat (list (include "sytq.image" .)) .Values.workerPool.policy.images | uniq | join "," -}}
{{- end -}}

{{- define "sytq.poolPolicy.serviceAccounts" -}}
{{- concat (list (printf "%s-worker" (include "sytq.fullname" .))) .Values.workerPool.policy.serviceAccounts | uniq | join "," -}}
{{- end -}}

{{- define "sytq.poolPolicy.secrets" -}}
{{- $names := list (include "sytq.secretName" .) -}}
{{- range .Values.workerPool.extraEnvFrom }}{{ with .secretRef }}{{ $names = append $names .name }}{{ end }}{{ end -}}
{{- range .Values.workerPool.extraEnv }}{{ with .valueFrom }}{{ with .secretKeyRef }}{{ $names = append $names .name }}{{ end }}{{ end }}{{ end -}}
{{- concat $names .Values.workerPool.policy.secrets | uniq | join "," -}}
{{- end -}}

{{- define "sytq.poolPolicy.configMaps" -}}
{{- $names := list (printf "%s-config" (include "sytq.fullname" .)) -}}
{{- range .Values.workerPool.extraEnvFrom }}{{ with .configMapRef }}{{ $names = append $names .name }}{{ end }}{{ end -}}
{{- range .Values.workerPool.extraEnv }}{{ with .valueFrom }}{{ with .configMapKeyRef }}{{ $names = append $names .name }}{{ end }}{{ end }}{{ end -}}
{{- concat $names .Values.workerPool.policy.configMaps | uniq | join "," -}}
{{- end -}}

{{- define "sytq.poolPolicy.env" -}}
{{- $names := list "SYTQ_CALLBACK_SECRET" -}}
{{- range .Values.workerPool.extraEnv }}{{ $names = append $names .name }}{{ end -}}
{{- concat $names .Values.workerPool.policy.env | uniq | join "," -}}
{{- end -}}

{{/* Cluster-scoped: the release namespace is part of the name, so same-named releases never clash. */}}
{{- define "sytq.admissionName" -}}
{{- printf "%s-%s-llmworkerpool" .Release.Namespace (include "sytq.fullname" .) | trunc 253 | trimSuffix "-" -}}
{{- end -}}

{{/* "true" when the release generates an admin API key: the chart's own Secret, no keys or Basic users given, auth on. */}}
{{- define "sytq.generatesAdminKey" -}}
{{- if and (not .Values.secrets.existingSecret) (not .Values.secrets.apiKeys) (not .Values.secrets.basicAuthUsers) (not .Values.api.authDisabled) -}}
true
{{- end -}}
{{- end -}}

{{- define "sytq.adminKeySecretName" -}}
{{- printf "%s-admin-key" (include "sytq.fullname" .) -}}
{{- end -}}

{{/* The generated admin key: read back from the live Secret (kept on upgrade), else new. Memoized
in .Values so every template of one render sees the same key. */}}
{{- define "sytq.adminKey" -}}
{{- if not (hasKey .Values "_generatedAdminKey") -}}
{{- $previous := (lookup "v1" "Secret" .Release.Namespace (include "sytq.adminKeySecretName" .)) | default dict -}}
{{- $key := get (get $previous "data" | default dict) "api-key" | b64dec | default (randAlphaNum 40) -}}
{{- $_ := set .Values "_generatedAdminKey" $key -}}
{{- end -}}
{{- get .Values "_generatedAdminKey" -}}
{{- end -}}

{{/* Refuse an API exposed without keys: an Ingress needs keys or Basic users that you chose. */}}
{{- define "sytq.checkAuth" -}}
{{- if and .Values.api.enabled .Values.ingress.enabled -}}
{{- if .Values.api.authDisabled -}}
{{- fail "ingress.enabled exposes the API: api.authDisabled=true is refused with an Ingress" -}}
{{- end -}}
{{- if not (or .Values.secrets.existingSecret .Values.secrets.apiKeys .Values.secrets.basicAuthUsers) -}}
{{- fail "ingress.enabled exposes the API: set secrets.apiKeys or secrets.basicAuthUsers (or secrets.existingSecret holding SYTQ_API_KEYS)" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.api.authDisabled (or .Values.secrets.apiKeys .Values.secrets.basicAuthUsers) -}}
{{- fail "api.authDisabled=true contradicts secrets.apiKeys / secrets.basicAuthUsers (the API would refuse to start)" -}}
{{- end -}}
{{- end -}}
