#!/bin/sh
# Creates the Temporal server's databases (temporal, temporal_visibility) in
# temporal-postgresql and brings their schemas up to date. Run once by the
# temporal-schema service of compose.yaml (temporalio/admin-tools image),
# before the server starts; running it again is harmless.
set -eu
ep=temporal-postgresql
for db in temporal temporal_visibility; do
  case $db in
    temporal) dir=temporal ;;
    temporal_visibility) dir=visibility ;;
  esac
  temporal-sql-tool --plugin postgres12 --ep "$ep" -u temporal -p 5432 --db "$db" create || true
  temporal-sql-tool --plugin postgres12 --ep "$ep" -u temporal -p 5432 --db "$db" setup-schema -v 0.0 || true
  temporal-sql-tool --plugin postgres12 --ep "$ep" -u temporal -p 5432 --db "$db" \
    update-schema -d "/etc/temporal/schema/postgresql/v12/$dir/versioned"
done
echo "temporal-schema: databases ready"
