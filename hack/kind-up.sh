#!/usr/bin/env bash
# Try SYT Queue on a laptop: a kind cluster, our image, Redis + MariaDB, the Helm chart, one task.
#
# Needs: docker, kind, kubectl, helm on PATH. Run from anywhere:
#   hack/kind-up.sh            create (or reuse) the cluster and install everything
#   hack/kind-up.sh --down     delete the cluster
# Env: DEEPSEEK_API_KEY (optional; without it the workers answer with the built-in stub LLM),
#      IMAGE (default syt-queue:dev), CLUSTER (default syt-queue).
# Afterwards the API is at http://localhost:8080 (kind-config.yaml maps NodePort 30080 there).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${CLUSTER:-syt-queue}"
IMAGE="${IMAGE:-syt-queue:dev}"
NS=syt-queue

log() { echo "[kind-up] $*" >&2; }
need() { command -v "$1" >/dev/null || { log "missing '$1' on PATH"; exit 1; }; }

if [[ "${1:-}" == "--down" ]]; then
  need kind
  kind delete cluster --name "$CLUSTER"
  exit 0
fi
for tool in docker kind kubectl helm; do need "$tool"; done

# 1. Cluster (one control plane, two workers, port 8080 -> NodePort 30080).
if ! kind get clusters | grep -qx "$CLUSTER"; then
  log "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --config "$ROOT/kind-config.yaml" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

# 2. Image: build it and load it into every node (no registry needed).
log "building $IMAGE"
docker build -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

# 3. Redis and MariaDB for the queue and the results (demo-grade: no persistence, fixed password).
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NS" apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: redis}
spec:
  selector: {matchLabels: {app: redis}}
  template:
    metadata: {labels: {app: redis}}
    spec:
      containers: [{name: redis, image: "redis:7-alpine", ports: [{containerPort: 6379}]}]
---
apiVersion: v1
kind: Service
metadata: {name: redis}
spec: {selector: {app: redis}, ports: [{port: 6379}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: mysql}
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
metadata: {name: mysql}
spec: {selector: {app: mysql}, ports: [{port: 3306}]}
YAML
kubectl -n "$NS" rollout status deploy/redis deploy/mysql --timeout=180s

# 4. The chart: API on NodePort 30080, controller, a worker pool that starts at one replica.
log "installing the chart"
helm upgrade --install syt-queue "$ROOT/charts/syt-queue" -n "$NS" --wait --timeout 5m \
  --set image.repository="${IMAGE%%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set api.service.type=NodePort --set api.service.nodePort=30080 \
  --set secrets.redisUrl="redis://redis.$NS.svc:6379/0" \
  --set secrets.databaseUrl="mysql+pymysql://root:demo@mysql.$NS.svc:3306/sytq" \
  --set secrets.deepseekApiKey="${DEEPSEEK_API_KEY:-}" \
  --set workerPool.minReplicas=1

# 5. One task the Kubernetes way, one over HTTP.
log "submitting an LLMTask"
kubectl -n "$NS" apply -f "$ROOT/manifests/examples/llmtask.yaml"
kubectl -n "$NS" wait llmtask/summarize-example --for=jsonpath='{.status.phase}'=Succeeded --timeout=180s
kubectl -n "$NS" get llmtasks -o wide
log "submitting over HTTP"
curl -fsS http://localhost:8080/api/v1/tasks/llm -H 'content-type: application/json' \
  -d '{"prompt": "Say hello in three languages."}'
echo
log "done: kubectl -n $NS get llmtasks,llmworkerpools,pods"
