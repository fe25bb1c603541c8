#!/usr/bin/env bash
# Create the three PostgreSQL role Secrets for the dev overlay, with random passwords (nothing is written to
# disk or git). CloudNativePG sets each role's password from its Secret; the services read it as PGPASSWORD.
# Existing Secrets are left alone, so rerunning never changes a password under running pods.
#   deploy/tools/dev-secrets.sh [namespace]        (default: d06)
set -euo pipefail
namespace="${1:-d06}"
for role in ingest aggregate query; do
  name="d06-pg-${role}"
  if kubectl -n "$namespace" get secret "$name" >/dev/null 2>&1; then
    echo "secret/$name exists: kept"
    continue
  fi
  password="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
  kubectl -n "$namespace" create secret generic "$name" --type=kubernetes.io/basic-auth \
    --from-literal=username="d06_${role}" --from-literal=password="$password"
  kubectl -n "$namespace" label secret "$name" cnpg.io/reload=true app.kubernetes.io/part-of=d06
done
