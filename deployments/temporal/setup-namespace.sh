#!/bin/sh
# Creates the namespace $TEMPORAL_NAMESPACE (temporalio/server does not create
# one) and Sluice's search attributes, SluicePipeline and SluiceState
# (Keyword), in it. Run once by the temporal-setup service of compose.yaml
# (temporalio/admin-tools image, which has the temporal CLI); running it
# again is harmless. TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE come from the
# environment.
set -eu
addr=${TEMPORAL_ADDRESS:-temporal:7233}
ns=${TEMPORAL_NAMESPACE:-default}

attempt=0
until temporal operator cluster health --address "$addr"; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 30 ]; then
    echo "temporal-setup: the server at $addr is not healthy" >&2
    exit 1
  fi
  sleep 2
done

temporal operator namespace describe --address "$addr" --namespace "$ns" >/dev/null 2>&1 ||
  temporal operator namespace create --address "$addr" --namespace "$ns" --retention 72h

for name in SluicePipeline SluiceState; do
  if temporal operator search-attribute list --address "$addr" --namespace "$ns" | grep -qw "$name"; then
    echo "temporal-setup: search attribute $name exists"
  else
    temporal operator search-attribute create --address "$addr" --namespace "$ns" --name "$name" --type Keyword
  fi
done
echo "temporal-setup: namespace $ns and search attributes ready"
