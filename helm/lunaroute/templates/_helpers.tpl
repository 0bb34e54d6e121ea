{{/*
Helpers. The `lunaroute.sidecar.*` templates and the names they use read only `.Values` and `.Release`,
so another chart can include them with (dict "Values" .Values.lunaroute "Release" .Release).
*/}}

{{- define "lunaroute.name" -}}
{{- default "lunaroute" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lunaroute.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "lunaroute.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "lunaroute.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lunaroute.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lunaroute.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lunaroute.labels" -}}
helm.sh/chart: {{ include "lunaroute.chart" . }}
{{ include "lunaroute.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lunaroute
{{- end }}

{{/* The Deployment's component: the gateway (Envoy + ext_proc) or, in mesh mode, ext_proc alone. */}}
{{- define "lunaroute.component" -}}
{{- if eq .Values.mode "mesh" }}extproc{{ else }}gateway{{ end }}
{{- end }}

{{- define "lunaroute.workloadName" -}}
{{- if eq .Values.mode "mesh" }}{{ include "lunaroute.extprocServiceName" . }}{{ else }}{{ include "lunaroute.fullname" . }}{{ end }}
{{- end }}

{{- define "lunaroute.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lunaroute.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "lunaroute.image" -}}
{{- $tag := .Values.image.tag }}
{{- if not $tag }}
{{- if .Chart }}{{ $tag = .Chart.AppVersion }}{{ else }}{{ fail "lunaroute: set image.tag when including the sidecar templates from another chart" }}{{ end }}
{{- end }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{- define "lunaroute.extprocServiceName" -}}
{{- printf "%s-extproc" (include "lunaroute.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lunaroute.extprocHost" -}}
{{- printf "%s.%s.svc.cluster.local" (include "lunaroute.extprocServiceName" .) .Release.Namespace }}
{{- end }}

{{/* The name of the Secret with provider keys, or nothing. */}}
{{- define "lunaroute.keysSecretName" -}}
{{- if .Values.providerKeys.existingSecret }}
{{- .Values.providerKeys.existingSecret }}
{{- else if .Values.providerKeys.keys }}
{{- printf "%s-keys" (include "lunaroute.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
The gateway config (our YAML schema) as stored in the ConfigMap: `.Values.config`, with the keys the
chart owns set from `envoy.*` / `extProc.*`, so Envoy, the ext_proc server and the mesh patches agree.
*/}}
{{- define "lunaroute.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $ep := .Values.extProc }}
{{- /* the workers' Unix sockets: Envoy's way in when it shares the pod, the probes' way in always */}}
{{- $managed := dict "port" (int $ep.port) "socket_dir" (include "lunaroute.socketDir" .) "message_timeout_ms" (int $ep.messageTimeoutMs) "max_message_bytes" (int64 $ep.maxMessageBytes) }}
{{- if eq .Values.mode "mesh" }}
{{- /* the mesh's proxies come over the pod network: TCP, with mutual TLS unless switched off */}}
{{- $_ := set $managed "host" (include "lunaroute.extprocHost" .) }}
{{- $_ := set $managed "bind_host" "0.0.0.0" }}
{{- $_ := set $managed "workers" 1 }}
{{- if $ep.mtls.enabled }}
{{- $dir := include "lunaroute.mtlsDir" . }}
{{- $_ := set $managed "tls" (dict "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir) "client_ca_file" (printf "%s/ca.crt" $dir)) }}
{{- end }}
{{- else }}
{{- /* Envoy shares the pod: no gRPC port at all, only the sockets in a volume of these two containers */}}
{{- $_ := set $managed "host" "127.0.0.1" }}
{{- $_ := set $managed "workers" (int $ep.workers) }}
{{- $_ := set $cfg "limits" (include "lunaroute.envoyLimits" (list . (get $cfg "limits" | default dict)) | fromYaml) }}
{{- /* a sidecar serves its own pod over loopback only; the gateway serves the pod network */}}
{{- $_ := set $cfg "listen" (dict "host" (ternary "127.0.0.1" "0.0.0.0" (eq .Values.mode "sidecar")) "port" (int .Values.envoy.port)) }}
{{- /* a Unix socket in Envoy's own /tmp: an app container sharing the pod's network cannot reach it */}}
{{- $_ := set $cfg "admin" (dict "socket" "/tmp/envoy-admin.sock") }}
{{- /* credential pools: the pool file Envoy watches and its log of attempts, shared with the workers */}}
{{- $_ := set $cfg "pools" (merge (dict "state_dir" "/run/lunaroute-pools") (get $cfg "pools" | default dict)) }}
{{- $access := deepCopy (get $cfg "access" | default dict) }}
{{- if and (eq .Values.mode "gateway") (not (or (get $access "keys") (get $access "allow_anonymous"))) }}
{{- fail "config.access: no gateway keys, and the gateway listens on the pod network: anyone who reaches the Service would spend your providers' keys. Add config.access.keys (README: Security), or set config.access.allow_anonymous: true if a NetworkPolicy or the mesh protects it" }}
{{- end }}
{{- if and (eq .Values.mode "gateway") (not (hasKey $access "allowed_hosts")) }}
{{- /* in-cluster clients use Service names and pod IPs; DNS rebinding is a laptop-browser threat */}}
{{- $_ := set $access "allowed_hosts" (list "*") }}
{{- end }}
{{- $_ := set $cfg "access" $access }}
{{- end }}
{{- if and (eq .Values.mode "mesh") (get (get $cfg "access" | default dict) "keys") }}
{{- fail "config.access.keys: gateway keys are checked by the gateway's own Envoy, which mesh mode does not run; use the mesh's authentication (Istio RequestAuthentication / Envoy Gateway SecurityPolicy) instead" }}
{{- end }}
{{- $_ := set $cfg "extproc" (merge $managed (get $cfg "extproc" | default dict)) }}
{{- toYaml $cfg }}
{{- end }}

{{/* Where the workers' Unix sockets live (a volume shared by the ext_proc and Envoy containers only). */}}
{{- define "lunaroute.socketDir" -}}/run/lunaroute{{- end }}

{{/* Where the ext_proc container finds its mutual-TLS certificate, key and client CA (mesh mode). */}}
{{- define "lunaroute.mtlsDir" -}}/etc/lunaroute-tls{{- end }}

{{/* Mesh mode with mutual TLS between the mesh's proxies and the workers. */}}
{{- define "lunaroute.mtls" -}}
{{- if and (eq .Values.mode "mesh") .Values.extProc.mtls.enabled }}true{{ end }}
{{- end }}

{{/* The Secret with the workers' certificate, key and client CA (tls.crt, tls.key, ca.crt). */}}
{{- define "lunaroute.mtlsServerSecret" -}}
{{- .Values.extProc.mtls.existingSecret | default (printf "%s-extproc-tls" (include "lunaroute.fullname" .) | trunc 63 | trimSuffix "-") }}
{{- end }}

{{/* The Secret with the proxies' client certificate, key and the CA of the workers' (tls.crt, tls.key, ca.crt). */}}
{{- define "lunaroute.mtlsClientSecret" -}}
{{- .Values.extProc.mtls.clientSecret | default (printf "%s-extproc-client" (include "lunaroute.fullname" .) | trunc 63 | trimSuffix "-") }}
{{- end }}

{{/* The namespace of the Istio proxies that run the filter (their client certificate Secret goes there). */}}
{{- define "lunaroute.istioProxyNamespace" -}}
{{- .Values.mesh.istio.proxyNamespace | default .Values.mesh.istio.namespace | default .Release.Namespace }}
{{- end }}

{{/* A Kubernetes memory quantity ("512Mi", "1G", "1073741824") in bytes. */}}
{{- define "lunaroute.bytes" -}}
{{- $q := toString . }}
{{- $digits := regexFind "^[0-9]+" $q }}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 }}
{{- $unit := trimPrefix $digits $q }}
{{- if or (not $digits) (not (hasKey $units $unit)) }}
{{- fail (printf "envoy.resources.limits.memory: %q is not a memory quantity the chart reads; write it like 512Mi or 1Gi" $q) }}
{{- end }}
{{- mul (int64 $digits) (get $units $unit) }}
{{- end }}

{{/*
The config's `limits` with Envoy's heap cap below its container's memory limit, so the overload manager
(which resets the streams holding the most memory from 85 % of the cap, refuses new requests at 95 %)
acts before the kernel's OOM killer ends every stream at once. Unset: 75 % of the limit (the rest is
what Envoy's process holds beyond its heap). (list . limits)
*/}}
{{- define "lunaroute.envoyLimits" -}}
{{- $root := index . 0 }}
{{- $limits := deepCopy (index . 1) }}
{{- $memory := dig "limits" "memory" "" ($root.Values.envoy.resources | default dict) }}
{{- if $memory }}
{{- $cap := int64 (include "lunaroute.bytes" $memory) }}
{{- if hasKey $limits "envoy_max_heap_bytes" }}
{{- if ge (int64 (get $limits "envoy_max_heap_bytes")) $cap }}
{{- fail (printf "config.limits.envoy_max_heap_bytes: %v is not below envoy.resources.limits.memory (%s = %d bytes): the kernel would kill Envoy before its overload manager acts; leave it unset (75 %% of the limit) or lower it" (get $limits "envoy_max_heap_bytes") $memory $cap) }}
{{- end }}
{{- else }}
{{- $heap := div (mul $cap 3) 4 }}
{{- if lt $heap 67108864 }}
{{- fail (printf "envoy.resources.limits.memory: %s leaves Envoy a heap cap of %d bytes (75 %%), below the 64 MiB the gateway needs; raise the limit to at least 86Mi" $memory $heap) }}
{{- end }}
{{- $_ := set $limits "envoy_max_heap_bytes" $heap }}
{{- end }}
{{- end }}
{{- toYaml $limits }}
{{- end }}

{{/* Fail early when a provider's key variable has no source (Envoy would refuse to start). */}}
{{- define "lunaroute.checkKeys" -}}
{{- if and (ne .Values.mode "mesh") (not .Values.providerKeys.existingSecret) }}
{{- $extra := list }}
{{- range .Values.envoy.extraEnv }}{{ $extra = append $extra .name }}{{ end }}
{{- range $name, $p := (.Values.config.providers | default dict) }}
{{- if and (kindIs "map" $p) (get $p "api_key_env") }}
{{- $var := get $p "api_key_env" }}
{{- if not (or (hasKey ($.Values.providerKeys.keys | default dict) $var) (has $var $extra)) }}
{{- fail (printf "config.providers.%s.api_key_env: %s has no source; set providerKeys.existingSecret to a Secret with the key %s (or providerKeys.keys.%s, or envoy.extraEnv)" $name $var $var $var) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* An HTTP probe over loopback with bash only (the Envoy image has no curl). (list port path) */}}
{{- define "lunaroute.loopbackProbe" -}}
{{- printf "exec 3<>/dev/tcp/127.0.0.1/%d && printf 'GET %s HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '" (int (index . 0)) (index . 1) }}
{{- end }}

{{/* A Gateway API duration ("10s", "2500ms") from milliseconds. */}}
{{- define "lunaroute.gwDuration" -}}
{{- $ms := int . }}
{{- if eq (mod $ms 1000) 0 }}{{ printf "%ds" (div $ms 1000) }}{{ else }}{{ printf "%dms" $ms }}{{ end }}
{{- end }}

{{/*
The ext_proc HTTP filter for the mesh's proxies: the same settings as the renderer's
`extproc.envoy_config.ext_proc_filter(cfg)`, only the gRPC cluster differs. Call with (list . clusterName).
*/}}
{{- define "lunaroute.extProcFilter" -}}
{{- $root := index . 0 }}
{{- $cluster := index . 1 }}
{{- $ep := $root.Values.extProc }}
{{- $timeout := divf $ep.messageTimeoutMs 1000.0 -}}
name: envoy.filters.http.ext_proc
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
  grpc_service:
    envoy_grpc:
      cluster_name: {{ $cluster | quote }}
      max_receive_message_length: {{ int64 $ep.maxMessageBytes }}
    timeout: {{ printf "%gs" $timeout | quote }}
  failure_mode_allow: {{ $ep.failOpen }}
  processing_mode:
    {{- toYaml $ep.processingMode | nindent 4 }}
  allow_mode_override: {{ $ep.allowModeOverride }}
  message_timeout: {{ printf "%gs" $timeout | quote }}
  max_message_timeout: {{ printf "%gs" (maxf 30.0 $timeout) | quote }}
  mutation_rules:
    allow_all_routing: true
{{- end }}

{{/* Pod volumes for the gateway containers. */}}
{{- define "lunaroute.sidecar.volumes" -}}
- name: lunaroute-config
  configMap:
    name: {{ include "lunaroute.fullname" . }}
- name: lunaroute-envoy-config
  emptyDir:
    sizeLimit: 16Mi
- name: lunaroute-envoy-tmp
  emptyDir:
    sizeLimit: 64Mi
- name: lunaroute-extproc-tmp
  emptyDir:
    sizeLimit: 256Mi
{{ include "lunaroute.socketsVolume" . }}
- name: lunaroute-pools
  emptyDir:
    sizeLimit: 64Mi
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The initContainer that renders Envoy's bootstrap from the config: the renderer is the only source. */}}
{{- define "lunaroute.sidecar.initContainers" -}}
- name: lunaroute-render
  image: {{ include "lunaroute.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - render-envoy
    - --config
    - /etc/lunaroute/config.yaml
    - --output
    - /envoy/envoy.yaml
    - --ca-file
    - {{ .Values.envoy.caFile }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    requests: {cpu: 50m, memory: 64Mi}
    limits: {memory: 256Mi}
  volumeMounts:
    - name: lunaroute-config
      mountPath: /etc/lunaroute
      readOnly: true
    - name: lunaroute-envoy-config
      mountPath: /envoy
    - name: lunaroute-pools
      mountPath: /run/lunaroute-pools
{{- end }}

{{/* The workers' Unix sockets: only the containers that mount this volume can open them. */}}
{{- define "lunaroute.socketsVolume" -}}
- name: lunaroute-sockets
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end }}

{{/* The ext_proc container's probe: worker 0's gRPC health over its Unix socket (extproc/probe.py). */}}
{{- define "lunaroute.extprocProbe" -}}
exec:
  command: [python, -m, extproc.probe, {{ printf "unix:%s/worker-0.sock" (include "lunaroute.socketDir" .) | quote }}]
{{- end }}

{{/* The ext_proc server container. */}}
{{- define "lunaroute.extprocContainer" -}}
- name: lunaroute-extproc
  image: {{ include "lunaroute.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: [serve]
  env:
    - name: LUNAROUTE_CONFIG
      value: /etc/lunaroute/config.yaml
    {{- if ne .Values.mode "mesh" }}
    {{- /* spent budgets and token windows: the workers rewrite it, this pod's Envoy refuses them itself */}}
    - name: LUNAROUTE_SPENT_FILE
      value: /envoy/lunaroute-spent.yaml
    {{- end }}
    {{- with .Values.extProc.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if eq .Values.mode "mesh" }}
  ports:
    - name: lr-grpc
      containerPort: {{ .Values.extProc.port }}
      protocol: TCP
  {{- end }}
  {{- /* kubelet's gRPC probe dials the pod IP in plain text: it reaches neither a socket nor mutual TLS */}}
  livenessProbe:
    {{- include "lunaroute.extprocProbe" . | nindent 4 }}
    {{- toYaml .Values.extProc.livenessProbe | nindent 4 }}
  readinessProbe:
    {{- include "lunaroute.extprocProbe" . | nindent 4 }}
    {{- toYaml .Values.extProc.readinessProbe | nindent 4 }}
  resources:
    {{- toYaml .Values.extProc.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: lunaroute-config
      mountPath: /etc/lunaroute
      readOnly: true
    - name: lunaroute-extproc-tmp
      mountPath: /tmp
    - name: lunaroute-sockets
      mountPath: {{ include "lunaroute.socketDir" . }}
    {{- if ne .Values.mode "mesh" }}
    - name: lunaroute-envoy-config
      mountPath: /envoy
    - name: lunaroute-pools
      mountPath: /run/lunaroute-pools
    {{- end }}
    {{- if include "lunaroute.mtls" . }}
    - name: lunaroute-extproc-tls
      mountPath: {{ include "lunaroute.mtlsDir" . }}
      readOnly: true
    {{- end }}
{{- end }}

{{/* Envoy and the ext_proc server, side by side; Envoy reaches the workers on their Unix sockets. */}}
{{- define "lunaroute.sidecar.containers" -}}
- name: lunaroute-envoy
  image: "{{ .Values.envoy.image.repository }}:{{ .Values.envoy.image.tag }}"
  imagePullPolicy: {{ .Values.envoy.image.pullPolicy }}
  command: [envoy]
  args:
    - -c
    - /envoy/envoy.yaml
    - --disable-hot-restart
    - --log-level
    - {{ .Values.envoy.logLevel }}
    {{- range .Values.envoy.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  ports:
    - name: lr-http
      containerPort: {{ .Values.envoy.port }}
      protocol: TCP
  {{- $secret := include "lunaroute.keysSecretName" . }}
  {{- if $secret }}
  envFrom:
    - secretRef:
        name: {{ $secret }}
  {{- end }}
  {{- with .Values.envoy.extraEnv }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if eq .Values.mode "sidecar" }}
  {{- /* the sidecar listens on the pod's loopback only, out of kubelet's reach: probe from inside */}}
  livenessProbe:
    exec:
      command: [bash, -c, {{ include "lunaroute.loopbackProbe" (list .Values.envoy.port "/healthz") | quote }}]
    {{- toYaml .Values.envoy.livenessProbe | nindent 4 }}
  readinessProbe:
    exec:
      command: [bash, -c, {{ include "lunaroute.loopbackProbe" (list .Values.envoy.port "/readyz") | quote }}]
    {{- toYaml .Values.envoy.readinessProbe | nindent 4 }}
  {{- else }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ .Values.envoy.port }}
    {{- toYaml .Values.envoy.livenessProbe | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: {{ .Values.envoy.port }}
    {{- toYaml .Values.envoy.readinessProbe | nindent 4 }}
  {{- end }}
  {{- if .Values.envoy.preStopSleepSeconds }}
  lifecycle:
    preStop:
      exec:
        command: [sleep, {{ .Values.envoy.preStopSleepSeconds | quote }}]
  {{- end }}
  resources:
    {{- toYaml .Values.envoy.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: lunaroute-envoy-config
      mountPath: /envoy
      readOnly: true
    - name: lunaroute-pools
      mountPath: /run/lunaroute-pools
    - name: lunaroute-envoy-tmp
      mountPath: /tmp
    - name: lunaroute-sockets
      mountPath: {{ include "lunaroute.socketDir" . }}
    {{- with .Values.envoy.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{ include "lunaroute.extprocContainer" . }}
{{- end }}

{{/* The name the issue tracker and README use: the two containers to add to your pod. */}}
{{- define "lunaroute.sidecarContainers" -}}
{{ include "lunaroute.sidecar.containers" . }}
{{- end }}

{{/* Pod template annotations that roll the pods when the config or the chart's Secret changes. */}}
{{- define "lunaroute.podAnnotations" -}}
checksum/config: {{ include "lunaroute.config" . | sha256sum }}
{{- if and (not .Values.providerKeys.existingSecret) .Values.providerKeys.keys }}
checksum/keys: {{ toJson .Values.providerKeys.keys | sha256sum }}
{{- end }}
{{- end }}

{{/* Scheduling and identity settings shared by both Deployments. */}}
{{- define "lunaroute.podSpecCommon" -}}
serviceAccountName: {{ include "lunaroute.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automount }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
