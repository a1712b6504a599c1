{{/* Names. */}}
{{- define "hpcotel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hpcotel.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The cluster Deployment, its ServiceAccount and ClusterRole; also the Lease's name. */}}
{{- define "hpcotel.clusterName" -}}
{{- printf "%s-cluster" (include "hpcotel.fullname" .) -}}
{{- end -}}

{{- define "hpcotel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels; pass (dict "ctx" $ "component" "agent"). */}}
{{- define "hpcotel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hpcotel.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "hpcotel.labels" -}}
helm.sh/chart: {{ include "hpcotel.chart" .ctx }}
{{ include "hpcotel.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: hpcotel
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "hpcotel.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{- define "hpcotel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hpcotel.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "hpcotel.clusterServiceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- include "hpcotel.clusterName" . -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "true" when the DaemonSet's agents elect a leader for the cluster-scoped output. */}}
{{- define "hpcotel.leaderElection" -}}
{{- if and .Values.receivers.kubernetes.enabled .Values.cluster.enabled (not .Values.cluster.deployment.enabled) -}}true{{- end -}}
{{- end -}}

{{/* "true" when the 1-replica cluster Deployment runs. */}}
{{- define "hpcotel.clusterDeployment" -}}
{{- if and .Values.receivers.kubernetes.enabled .Values.cluster.enabled .Values.cluster.deployment.enabled -}}true{{- end -}}
{{- end -}}

{{/* The environment variable carrying the value of a header from a Secret. */}}
{{- define "hpcotel.headerEnv" -}}
{{- printf "HPCOTEL_OTLP_HEADER_%s" (. | upper | replace "-" "_") -}}
{{- end -}}

{{/* The kubelet's pod log tree: read-only hostPath at the same path in the pod (containerLogs). */}}
{{- define "hpcotel.containerLogsRoot" -}}/var/log/pods{{- end -}}

{{/* Where the receiver's TLS files are mounted (the projected volume "receiver-tls"). */}}
{{- define "hpcotel.receiverTLSDir" -}}/etc/hpcotel-tls{{- end -}}

{{/* The otlp receiver's tls section (YAML) when receivers.otlp.tls.secretName is set, else
     nothing; fails on a client CA without a server certificate or from two sources. */}}
{{- define "hpcotel.receiverTLS" -}}
{{- $tls := .Values.receivers.otlp.tls -}}
{{- $ca := $tls.clientCA -}}
{{- if and $ca.secretName $ca.configMapName -}}
{{- fail "receivers.otlp.tls.clientCA: set secretName or configMapName, not both" -}}
{{- end -}}
{{- if and (or $ca.secretName $ca.configMapName) (not $tls.secretName) -}}
{{- fail "receivers.otlp.tls.clientCA (mTLS) needs receivers.otlp.tls.secretName (the server certificate)" -}}
{{- end -}}
{{- if $tls.secretName -}}
{{- $dir := include "hpcotel.receiverTLSDir" . -}}
{{- $out := dict "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir) -}}
{{- if or $ca.secretName $ca.configMapName -}}
{{- $_ := set $out "client_ca_file" (printf "%s/client-ca.crt" $dir) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}
{{- end -}}

{{/* The exporters both configs share: (dict "exporters" {...} "all" [ids]). */}}
{{- define "hpcotel.exporters" -}}
{{- $v := .Values -}}
{{- $exporters := dict -}}
{{- $ids := list -}}
{{- with $v.exporters.otlp -}}
{{- if .enabled -}}
{{- $headers := deepCopy .headers -}}
{{- range $name, $_ := .headersFromSecret -}}
{{- $_ := set $headers $name (printf "${env:%s}" (include "hpcotel.headerEnv" $name)) -}}
{{- end -}}
{{- $otlp := dict "endpoint" .endpoint "compression" .compression "sending_queue" (dict "queue_size" (int .queueSize)) -}}
{{- if $headers -}}{{- $_ := set $otlp "headers" $headers -}}{{- end -}}
{{- if .tls -}}{{- $_ := set $otlp "tls" (deepCopy .tls) -}}{{- end -}}
{{- $id := ternary "otlphttp" "otlp" (eq .protocol "http") -}}
{{- $_ := set $exporters $id $otlp -}}
{{- $ids = append $ids $id -}}
{{- end -}}
{{- end -}}
{{- if $v.exporters.debug.enabled -}}
{{- $_ := set $exporters "debug" (dict "verbosity" "basic") -}}
{{- $ids = append $ids "debug" -}}
{{- end -}}
{{- toYaml (dict "exporters" $exporters "all" $ids) -}}
{{- end -}}

{{/* A pipeline entry, or nothing when it has no receiver or no exporter. */}}
{{- define "hpcotel.pipeline" -}}
{{- if and .receivers .exporters -}}
{{- toYaml (dict "receivers" .receivers "processors" .processors "exporters" .exporters "queue_size" (int .queueSize)) -}}
{{- end -}}
{{- end -}}

{{/* The DaemonSet's hpcotel config (YAML). */}}
{{- define "hpcotel.agentConfig" -}}
{{- $v := .Values -}}
{{- $bind := $v.bindAddress -}}
{{- $receivers := dict -}}
{{- $traces := list -}}
{{- $metrics := list -}}
{{- $logs := list -}}
{{- with $v.receivers.otlp -}}
{{- if .enabled -}}
{{- $grpc := dict "endpoint" (printf "%s:%d" $bind (int .grpcPort)) -}}
{{- $http := dict "endpoint" (printf "%s:%d" $bind (int .httpPort)) -}}
{{- with include "hpcotel.receiverTLS" $ -}}
{{- $_ := set $grpc "tls" (fromYaml .) -}}
{{- $_ := set $http "tls" (fromYaml .) -}}
{{- end -}}
{{- $otlp := dict "protocols" (dict "grpc" $grpc "http" $http) -}}
{{- if .authToken.name -}}
{{- $_ := set $otlp "auth" (dict "token" "${env:HPCOTEL_OTLP_TOKEN}") -}}
{{- end -}}
{{- $_ := set $receivers "otlp" $otlp -}}
{{- $traces = append $traces "otlp" -}}
{{- $metrics = append $metrics "otlp" -}}
{{- $logs = append $logs "otlp" -}}
{{- end -}}
{{- end -}}
{{- if $v.receivers.host.enabled -}}
{{- /* cpu, memory, load and paging read /proc, which shows the node; network and filesystem
       would show the pod's own network and mount namespaces, so they are left out. */ -}}
{{- $scrapers := dict "cpu" (dict) "memory" (dict) "load" (dict) "paging" (dict) -}}
{{- $_ := set $receivers "host" (dict "collection_interval" $v.receivers.host.collectionInterval "scrapers" $scrapers) -}}
{{- $metrics = append $metrics "host" -}}
{{- end -}}
{{- with $v.receivers.gpu -}}
{{- if .enabled -}}
{{- $gpu := dict "sample_interval" .sampleInterval "report_interval" .reportInterval "library_path" .libraryPath "processes" .processes -}}
{{- if .podResources.enabled -}}
{{- $_ := set $gpu "pod_resources" (dict "endpoint" (printf "%s/kubelet.sock" (trimSuffix "/" .podResources.hostPath))) -}}
{{- end -}}
{{- $_ := set $receivers "gpu" $gpu -}}
{{- $metrics = append $metrics "gpu" -}}
{{- $logs = append $logs "gpu" -}}
{{- end -}}
{{- end -}}
{{- with $v.containerLogs -}}
{{- if .enabled -}}
{{- /* exclude_pod_uid is left to its default, $HPCOTEL_POD_UID, which the DaemonSet sets. */ -}}
{{- $_ := set $receivers "kubernetes_logs" (dict "root" (include "hpcotel.containerLogsRoot" $) "state_dir" (printf "%s/kubernetes_logs" (trimSuffix "/" $v.stateDir)) "start_at" .startAt "exclude_namespaces" .excludeNamespaces) -}}
{{- $logs = append $logs "kubernetes_logs" -}}
{{- end -}}
{{- end -}}
{{- $processors := dict "batch" dict -}}
{{- $procs := list "batch" -}}
{{- with $v.receivers.kubernetes -}}
{{- if .enabled -}}
{{- $argocd := dict "namespaces" .argocd.namespaces "controller_namespace" .argocd.controllerNamespace "tracking_method" .argocd.trackingMethod "instance_label_key" .argocd.instanceLabelKey -}}
{{- if .argocd.environmentLabel -}}
{{- $_ := set $argocd "environment_label" .argocd.environmentLabel -}}
{{- end -}}
{{- $k8s := dict "auth_type" "serviceAccount" "mode" "node" "node_name" "${env:K8S_NODE_NAME}" "argocd" $argocd "lifecycle_logs" .lifecycleLogs -}}
{{- $leader := include "hpcotel.leaderElection" $ -}}
{{- if $leader -}}
{{- $_ := set $k8s "leader_election" (dict "lease_name" (include "hpcotel.clusterName" $) "lease_namespace" "${env:POD_NAMESPACE}" "identity" "${env:K8S_NODE_NAME}") -}}
{{- $_ := set $k8s "rollouts" (dict "state_file" (printf "%s/rollouts.json" (trimSuffix "/" $v.stateDir))) -}}
{{- $traces = append $traces "kubernetes" -}}
{{- end -}}
{{- /* In the logs pipeline for the pod lifecycle logs of this node (lifecycle_logs), whether or
       not this agent may emit the cluster output; unlisted, it still fills the Catalog. */ -}}
{{- if or $leader .lifecycleLogs -}}
{{- $logs = append $logs "kubernetes" -}}
{{- end -}}
{{- $_ := set $receivers "kubernetes" $k8s -}}
{{- $_ := set $processors "enrich" dict -}}
{{- $procs = list "enrich" "batch" -}}
{{- end -}}
{{- end -}}
{{- $shared := include "hpcotel.exporters" . | fromYaml -}}
{{- $exporters := $shared.exporters -}}
{{- $all := $shared.all | default list -}}
{{- if $v.exporters.file.enabled -}}
{{- $_ := set $exporters "file" (dict "path" (printf "%s/data" (trimSuffix "/" $v.stateDir))) -}}
{{- $all = append $all "file" -}}
{{- end -}}
{{- $metricsExporters := $all -}}
{{- if $v.exporters.prometheus.enabled -}}
{{- $prometheus := dict "endpoint" (printf "%s:%d" $bind (int $v.exporters.prometheus.port)) "dcgm_compatible" $v.exporters.prometheus.dcgmCompatible "resource_to_telemetry_conversion" (dict "enabled" $v.exporters.prometheus.resourceToTelemetry) -}}
{{- if $v.exporters.prometheus.authToken.name -}}
{{- $_ := set $prometheus "auth" (dict "token" "${env:HPCOTEL_PROMETHEUS_TOKEN}") -}}
{{- end -}}
{{- $_ := set $exporters "prometheus" $prometheus -}}
{{- $metricsExporters = append $metricsExporters "prometheus" -}}
{{- end -}}
{{- $pipelines := dict -}}
{{- range $signal, $recv := dict "traces" $traces "metrics" $metrics "logs" $logs -}}
{{- $exp := ternary $metricsExporters $all (eq $signal "metrics") -}}
{{- with include "hpcotel.pipeline" (dict "receivers" $recv "processors" $procs "exporters" $exp "queueSize" $v.pipelineQueueSize) -}}
{{- $pipeline := fromYaml . -}}
{{- if and $v.writeAheadLog.enabled (ne $signal "metrics") -}}
{{- $_ := set $pipeline "write_ahead_log" (dict "directory" (printf "%s/wal/%s" $v.stateDir $signal) "max_size_mib" (int $v.writeAheadLog.maxSizeMib) "fsync" $v.writeAheadLog.fsync) -}}
{{- end -}}
{{- $_ := set $pipelines $signal $pipeline -}}
{{- end -}}
{{- end -}}
{{- if not $pipelines -}}
{{- fail "hpcotel: no pipeline: enable at least one of receivers.otlp, receivers.host, receivers.gpu, containerLogs and at least one of exporters.otlp, exporters.prometheus, exporters.file, exporters.debug" -}}
{{- end -}}
{{- $config := dict "receivers" $receivers "processors" $processors "exporters" $exporters "extensions" (dict "health_check" (dict "endpoint" (printf "%s:%d" $bind (int $v.healthCheck.port)))) "service" (dict "extensions" (list "health_check") "pipelines" $pipelines) -}}
{{- toYaml (mustMergeOverwrite $config (deepCopy $v.config)) -}}
{{- end -}}

{{/* The cluster Deployment's hpcotel config (YAML). */}}
{{- define "hpcotel.clusterConfig" -}}
{{- $v := .Values -}}
{{- $k := $v.receivers.kubernetes -}}
{{- $argocd := dict "namespaces" $k.argocd.namespaces "controller_namespace" $k.argocd.controllerNamespace "tracking_method" $k.argocd.trackingMethod "instance_label_key" $k.argocd.instanceLabelKey -}}
{{- if $k.argocd.environmentLabel -}}
{{- $_ := set $argocd "environment_label" $k.argocd.environmentLabel -}}
{{- end -}}
{{- $k8s := dict "auth_type" "serviceAccount" "mode" "cluster" "argocd" $argocd "rollouts" (dict "state_file" "/var/lib/hpcotel/rollouts.json") -}}
{{- $shared := include "hpcotel.exporters" . | fromYaml -}}
{{- $all := $shared.all | default list -}}
{{- if not $all -}}
{{- fail "hpcotel: cluster.deployment.enabled needs exporters.otlp.enabled or exporters.debug.enabled (it emits traces and logs only)" -}}
{{- end -}}
{{- $pipelines := dict -}}
{{- range $signal := list "traces" "logs" -}}
{{- $_ := set $pipelines $signal (include "hpcotel.pipeline" (dict "receivers" (list "kubernetes") "processors" (list "batch") "exporters" $all "queueSize" $v.pipelineQueueSize) | fromYaml) -}}
{{- end -}}
{{- $config := dict "receivers" (dict "kubernetes" $k8s) "processors" (dict "batch" dict) "exporters" $shared.exporters "extensions" (dict "health_check" (dict "endpoint" (printf "%s:%d" $v.bindAddress (int $v.healthCheck.port)))) "service" (dict "extensions" (list "health_check") "pipelines" $pipelines) -}}
{{- toYaml (mustMergeOverwrite $config (deepCopy $v.cluster.deployment.config)) -}}
{{- end -}}

{{/* Environment shared by both workloads. */}}
{{- define "hpcotel.env" -}}
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: HOST_IP
  valueFrom:
    fieldRef:
      fieldPath: status.hostIP
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_UID
  valueFrom:
    fieldRef:
      fieldPath: metadata.uid
- name: HPCOTEL_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: HPCOTEL_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- if .Values.exporters.otlp.enabled }}
{{- range $name, $ref := .Values.exporters.otlp.headersFromSecret }}
- name: {{ include "hpcotel.headerEnv" $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name }}
      key: {{ $ref.key }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Health probes on the health_check extension. */}}
{{- define "hpcotel.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: health
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: health
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 3
{{- end -}}
