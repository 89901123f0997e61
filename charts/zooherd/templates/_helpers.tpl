{{/* Name of the chart, overridable with nameOverride. */}}
{{- define "zooherd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: the release name, followed by the chart name unless the
release name already contains it (`helm install zooherd charts/zooherd` gives "zooherd").
*/}}
{{- define "zooherd.fullname" -}}
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

{{/* Labels that select the operator pods. Never change them: a Deployment's selector is immutable. */}}
{{- define "zooherd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zooherd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The selector labels as key=value,key=value (ZOOHERD_OPERATOR_POD_LABELS): the ensembles'
NetworkPolicies admit the pods carrying them to the servers' AdminServer and client port. */}}
{{- define "zooherd.selectorLabelList" -}}
{{- $labels := include "zooherd.selectorLabels" . | fromYaml }}
{{- $pairs := list }}
{{- range $key := keys $labels | sortAlpha }}
{{- $pairs = append $pairs (printf "%s=%s" $key (index $labels $key)) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "zooherd.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "zooherd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: zooherd
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "zooherd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "zooherd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest; the tag defaults to the appVersion. Call with (list $image $) */}}
{{- define "zooherd.imageRef" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/*
What the operator does with the Kubernetes API, derived from src/controller/:
- watches ZooKeeperEnsembles and writes their status subresource;
- server-side applies each ensemble's StatefulSet, Services, ConfigMap,
  PodDisruptionBudget and NetworkPolicy, and watches them (label-filtered informers); deletes
  the NetworkPolicy when the ensemble turns it off;
- watches the server pods, and deletes the pod of a member that cannot recover by itself;
- reads, or creates once, each ensemble's superuser Secret (<name>-zooherd-superuser), the
  identity it reconfigures the ensemble as; it never lists, watches, changes or deletes
  Secrets (the garbage collector deletes it with the ensemble);
- takes ZooKeeperBackups, creates the scheduled ones and deletes those beyond keep; creates
  and deletes the throwaway one-server ensemble of a restore drill (owned by its backup);
- records Events (events.k8s.io; core/v1 events for clients that still use them).
The leader-election Lease is granted separately, in the release namespace only
(templates/leader-election-rbac.yaml). No nodes, no cluster-scoped objects.
*/}}
{{- define "zooherd.rules" -}}
# Restore drills (a backup's spec.verify): the operator creates a throwaway one-server
# ensemble owned by the backup, and deletes it once the drill has a verdict.
- apiGroups: ["zooherd.dev"]
  resources: ["zookeeperensembles"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: ["zooherd.dev"]
  resources: ["zookeeperensembles/status"]
  verbs: ["get", "patch", "update"]
# The children carry a controller owner reference with blockOwnerDeletion. Clusters that run
# the OwnerReferencesPermissionEnforcement admission plugin (OpenShift, for one) accept it only
# from a client that may update the owner's finalizers.
- apiGroups: ["zooherd.dev"]
  resources: ["zookeeperensembles/finalizers"]
  verbs: ["update"]
# Backups: the operator takes each ZooKeeperBackup once and records it in the status; it
# creates an ensemble's scheduled ones, deletes those beyond spec.backup.keep, and annotates
# the one a drill schedule drills (patch).
- apiGroups: ["zooherd.dev"]
  resources: ["zookeeperbackups"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["zooherd.dev"]
  resources: ["zookeeperbackups/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["zooherd.dev"]
  resources: ["zookeeperbackups/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/eviction"]
  verbs: ["create"]
# A member on a lost node whose volume lives only there is rebuilt elsewhere: its claim is
# deleted (spec.lostNode), only after the member has left the voters. A drill ensemble deleted
# by hand mid-drill is created again only once its claim is gone (get).
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "delete"]
# The superuser and quorum TLS Secrets: created once; the quorum TLS Secret updated to renew the
# servers' certificate (only a Secret the ensemble owns, written over the version read).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "update"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
