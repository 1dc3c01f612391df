#!/usr/bin/env bash
# Try SYT Queue on a laptop: a kind cluster, our image, Redis + MariaDB, the Helm chart, one task.
#
# Needs: docker, kind, kubectl, helm on PATH. Run from anywhere:
#   hack/kind-up.sh            create (or reuse) the cluster and install everything
#   hack/kind-up.sh --dry-run  print the steps as a shell script, run nothing (needs no tools)
#   hack/kind-up.sh --down     delete the cluster
# Env: DEEPSEEK_API_KEY (optional; without it the chart runs its stub LLM, `sytq stub-llm` from the
#      same image, and the workers get canned answers), IMAGE (default syt-queue:dev),
#      CLUSTER (default syt-queue).
# Afterwards the API is at http://localhost:8080 (kind-config.yaml maps NodePort 30080 there).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${CLUSTER:-syt-queue}"
IMAGE="${IMAGE:-syt-queue:dev}"
NS=syt-queue
NODE_PORT=30080  # kind-config.yaml maps this node port to localhost:8080
DRY_RUN=0

log() { echo "[kind-up] $*" >&2; }
need() { command -v "$1" >/dev/null || { log "missing '$1' on PATH"; exit 1; }; }
# run a command, or with --dry-run print it (shell-quoted) instead
run() {
  if ((DRY_RUN)); then printf '%q ' "$@" | sed 's/ $//'; echo; else "$@"; fi
}
# kubectl apply of the YAML on stdin, or with --dry-run print it as a here-document
apply_yaml() {
  if ((DRY_RUN)); then
    echo "kubectl -n $NS apply -f - <<'YAML'"; cat; echo "YAML"
  else
    kubectl -n "$NS" apply -f -
  fi
}

case "${1:-}" in
  --down) need kind; kind delete cluster --name "$CLUSTER"; exit 0 ;;
  --dry-run) DRY_RUN=1 ;;
  "") for tool in docker kind kubectl helm; do need "$tool"; done ;;
  *) log "unknown argument '$1' (expected --dry-run or --down)"; exit 2 ;;
esac
((DRY_RUN)) && echo "set -euo pipefail"

# 1. Cluster (one control plane, two workers, port 8080 -> NodePort 30080).
if ((DRY_RUN)) || ! kind get clusters | grep -qx "$CLUSTER"; then
  log "creating kind cluster $CLUSTER (skipped when it exists)"
  run kind create cluster --name "$CLUSTER" --config "$ROOT/kind-config.yaml" --wait 120s
fi
run kubectl config use-context "kind-$CLUSTER"

# 2. Image: build it and load it into every node (no registry needed).
log "building $IMAGE"
run docker build -t "$IMAGE" "$ROOT"
run kind load docker-image "$IMAGE" --name "$CLUSTER"

# 3. Redis and MariaDB for the queue and the results (demo-grade: no persistence, fixed password).
log "deploying Redis and MariaDB"
apply_yaml <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: $NS}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: redis, namespace: $NS}
spec:
  selector: {matchLabels: {app: redis}}
  template:
    metadata: {labels: {app: redis}}
    spec:
      containers: [{name: redis, image: "redis:7-alpine", ports: [{containerPort: 6379}]}]
---
apiVersion: v1
kind: Service
metadata: {name: redis, namespace: $NS}
spec: {selector: {app: redis}, ports: [{port: 6379}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: mysql, namespace: $NS}
spec:
  selector: {matchLabels: {app: mysql}}
  template:
    metadata: {labels: {app: mysql}}
    spec:
      containers:
        - name: mysql
          image: "mariadb:11"
          env:
            - {name: MARIADB_ROOT_PASSWORD, value: demo}
            - {name: MARIADB_DATABASE, value: sytq}
          ports: [{containerPort: 3306}]
---
apiVersion: v1
kind: Service
metadata: {name: mysql, namespace: $NS}
spec: {selector: {app: mysql}, ports: [{port: 3306}]}
YAML
run kubectl -n "$NS" rollout status deploy/redis deploy/mysql --timeout=180s

# 4. The chart: API on NodePort 30080, controller, a worker pool that starts at one replica.
#    Without a key the chart also runs its stub LLM and points the workers at it (stubLLM.enabled=auto).
log "installing the chart"
key_args=()
if [[ -n "${DEEPSEEK_API_KEY:-}" ]]; then
  # from a file, so the key shows neither in the process list nor in --dry-run output
  if ((DRY_RUN)); then key_file="<a file holding \$DEEPSEEK_API_KEY>"; else
    key_file="$(mktemp)"; trap 'rm -f "$key_file"' EXIT
    printf %s "$DEEPSEEK_API_KEY" >"$key_file"
  fi
  key_args=(--set-file "secrets.deepseekApiKey=$key_file")
else
  log "no DEEPSEEK_API_KEY: the workers get canned answers from the chart's stub LLM"
fi
run helm upgrade --install syt-queue "$ROOT/charts/syt-queue" -n "$NS" --wait --timeout 5m \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set api.service.type=NodePort --set api.service.nodePort="$NODE_PORT" \
  --set secrets.redisUrl="redis://redis.$NS.svc:6379/0" \
  --set secrets.databaseUrl="mysql+pymysql://root:demo@mysql.$NS.svc:3306/sytq" \
  ${key_args[@]+"${key_args[@]}"} \
  --set workerPool.minReplicas=1

# 5. One task the Kubernetes way, one over HTTP.
log "submitting an LLMTask"
run kubectl -n "$NS" apply -f "$ROOT/manifests/examples/llmtask.yaml"
run kubectl -n "$NS" wait llmtask/summarize-example --for=jsonpath='{.status.phase}'=Succeeded --timeout=180s
run kubectl -n "$NS" get llmtasks -o wide
log "submitting over HTTP with the admin API key the chart generated"
if ((DRY_RUN)); then
  echo "api_key=\$(kubectl -n $NS get secret syt-queue-admin-key -o jsonpath='{.data.api-key}' | base64 -d)"
  api_key='$api_key'
else
  api_key="$(kubectl -n "$NS" get secret syt-queue-admin-key -o jsonpath='{.data.api-key}' | base64 -d)"
fi
run curl -fsS http://localhost:8080/api/v1/tasks/llm -H 'content-type: application/json' \
  -H "Authorization: Bearer $api_key" -d '{"prompt": "Say hello in three languages."}'
((DRY_RUN)) || echo
log "done: kubectl -n $NS get llmtasks,llmworkerpools,pods"
