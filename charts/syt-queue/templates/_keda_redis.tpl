{{/* KEDA's view of the Redis connection: credentials, TLS and CA for its triggers, taken from
secrets.redisUrl (or, with secrets.existingSecret, from the keys that keda.auth / keda.tls.caKey name). */}}

{{/* A URL's %XX escapes decoded; %25 last, so "%252F" becomes "%2F". Other escapes (non-ASCII) are refused. */}}
{{- define "sytq.urlDecode" -}}
{{- $escapes := dict "20" " " "21" "!" "22" "\"" "23" "#" "24" "$" "26" "&" "27" "'" "28" "(" "29" ")" "2A" "*" "2B" "+" "2C" "," "2F" "/" "3A" ":" "3B" ";" "3C" "<" "3D" "=" "3E" ">" "3F" "?" "40" "@" "5B" "[" "5C" "\\" "5D" "]" "5E" "^" "60" "`" "7B" "{" "7C" "|" "7D" "}" "7E" "~" -}}
{{- $known := printf "(?i)%%(25|%s)" (keys $escapes | sortAlpha | join "|") -}}
{{- if contains "%" (regexReplaceAll $known . "") -}}
{{- fail "secrets.redisUrl: KEDA cannot be given a user or password with %-escapes of non-ASCII characters; use secrets.existingSecret and keda.auth" -}}
{{- end -}}
{{- $s := . -}}
{{- range $hex, $char := $escapes -}}
{{- $s = regexReplaceAllLiteral (printf "(?i)%%%s" $hex) $s $char -}}
{{- end -}}
{{- replace "%25" "%" $s -}}
{{- end -}}

{{/* One URL query parameter's raw value, or "". */}}
{{- define "sytq.urlParam" -}}
{{- regexReplaceAll "^[?&][^=]*=" (regexFind (printf "[?&]%s=[^&]*" .name) .url) "" -}}
{{- end -}}

{{/* JSON: data (keys the chart's Secret adds for KEDA), refs (TriggerAuthentication secretTargetRef
entries), tlsByAuth (TLS with a CA: tls/ca in the TriggerAuthentication), enableTLS and unsafeSsl
(the trigger's own metadata, without a CA). */}}
{{- define "sytq.kedaRedis" -}}
{{- $k := .Values.keda -}}
{{- $secret := include "sytq.secretName" . -}}
{{- $sentinel := ne $k.sentinel.addresses "" -}}
{{- $tls := $k.tls.enabled -}}
{{- $unsafe := $k.tls.unsafeSsl -}}
{{- $data := dict -}}
{{- $refs := list -}}
{{- /* redisTLS.caSecret: the CA our own pods mount, also KEDA's unless keda.tls.ca / caKey names one. */}}
{{- $ca := .Values.redisTLS.caSecret -}}
{{- $caRef := list -}}
{{- if not .Values.secrets.existingSecret -}}
{{- if or $k.auth.usernameKey $k.auth.passwordKey $k.auth.sentinelUsernameKey $k.auth.sentinelPasswordKey $k.tls.caKey -}}
{{- fail "keda.auth.*Key and keda.tls.caKey name keys of secrets.existingSecret; without it KEDA's credentials follow secrets.redisUrl" -}}
{{- end -}}
{{- $url := .Values.secrets.redisUrl | default "" -}}
{{- $scheme := regexFind "^[a-z+]+" $url -}}
{{- if hasPrefix "rediss" $scheme -}}{{- $tls = true -}}{{- end -}}
{{- if eq (include "sytq.urlParam" (dict "url" $url "name" "ssl_cert_reqs")) "none" -}}{{- $unsafe = true -}}{{- end -}}
{{- $userinfo := regexFind "^[a-z+]+://[^/@?]*@" $url | trimPrefix (printf "%s://" $scheme) | trimSuffix "@" -}}
{{- if $userinfo -}}
{{- $parts := splitn ":" 2 $userinfo -}}
{{- with $parts._0 }}{{ $_ := set $data "KEDA_REDIS_USERNAME" (include "sytq.urlDecode" .) }}{{ end -}}
{{- with $parts._1 }}{{ $_ := set $data "KEDA_REDIS_PASSWORD" (include "sytq.urlDecode" .) }}{{ end -}}
{{- end -}}
{{- if $sentinel -}}
{{- with include "sytq.urlParam" (dict "url" $url "name" "sentinel_username") }}{{ $_ := set $data "KEDA_REDIS_SENTINEL_USERNAME" (include "sytq.urlDecode" .) }}{{ end -}}
{{- with include "sytq.urlParam" (dict "url" $url "name" "sentinel_password") }}{{ $_ := set $data "KEDA_REDIS_SENTINEL_PASSWORD" (include "sytq.urlDecode" .) }}{{ end -}}
{{- end -}}
{{- if $k.tls.ca -}}
{{- $_ := set $data "KEDA_REDIS_CA" $k.tls.ca -}}
{{- else if $ca.name -}}
{{- $caRef = list (dict "parameter" "ca" "name" $ca.name "key" $ca.key) -}}
{{- else if and $tls (not $unsafe) (include "sytq.urlParam" (dict "url" $url "name" "ssl_ca_certs")) -}}
{{- fail "secrets.redisUrl names its own CA (ssl_ca_certs): give KEDA the same CA as keda.tls.ca (PEM)" -}}
{{- end -}}
{{- $params := dict "KEDA_REDIS_USERNAME" "username" "KEDA_REDIS_PASSWORD" "password" "KEDA_REDIS_SENTINEL_USERNAME" "sentinelUsername" "KEDA_REDIS_SENTINEL_PASSWORD" "sentinelPassword" "KEDA_REDIS_CA" "ca" -}}
{{- range $key := keys $data | sortAlpha -}}
{{- $refs = append $refs (dict "parameter" (get $params $key) "name" $secret "key" $key) -}}
{{- end -}}
{{- else -}}
{{- if $k.tls.ca -}}
{{- fail "keda.tls.ca is stored in the chart's Secret: with secrets.existingSecret put the CA there and name its key in keda.tls.caKey" -}}
{{- end -}}
{{- $named := list (list "username" $k.auth.usernameKey) (list "password" $k.auth.passwordKey) (list "ca" $k.tls.caKey) -}}
{{- if $sentinel -}}
{{- $named = concat $named (list (list "sentinelUsername" $k.auth.sentinelUsernameKey) (list "sentinelPassword" $k.auth.sentinelPasswordKey)) -}}
{{- end -}}
{{- range $named -}}
{{- if index . 1 }}{{ $refs = append $refs (dict "parameter" (index . 0) "name" $secret "key" (index . 1)) }}{{ end -}}
{{- end -}}
{{- if and $ca.name (not $k.tls.caKey) -}}
{{- $caRef = list (dict "parameter" "ca" "name" $ca.name "key" $ca.key) -}}
{{- end -}}
{{- end -}}
{{- $refs = concat $refs $caRef -}}
{{- $withCa := ne (printf "%s%s%s" $k.tls.ca $k.tls.caKey $ca.name) "" -}}
{{- if $withCa }}{{ $tls = true }}{{ end -}}
{{- if and $withCa $unsafe -}}
{{- fail "keda.tls.unsafeSsl (or ssl_cert_reqs=none) skips the certificate check that keda.tls.ca (or redisTLS.caSecret) is for: choose one" -}}
{{- end -}}
{{- if and $unsafe (not $tls) -}}
{{- fail "keda.tls.unsafeSsl needs TLS (keda.tls.enabled or a rediss URL)" -}}
{{- end -}}
{{- toJson (dict "data" $data "refs" $refs "tlsByAuth" $withCa "enableTLS" (and $tls (not $withCa)) "unsafeSsl" $unsafe) -}}
{{- end -}}
