#!/usr/bin/env bash
# Starts a ClickHouse server for local use (demo, benchmarks) if none
# answers on 127.0.0.1:9000: installs Debian's clickhouse-server when it is
# missing, then runs it in the background with its files under var/clickhouse.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

answers() { (exec 3<>/dev/tcp/127.0.0.1/9000) 2>/dev/null; }

if answers; then
  echo "ClickHouse already answers on 127.0.0.1:9000"
  exit 0
fi

SERVER=$(command -v clickhouse-server || true)
[ -z "$SERVER" ] && [ -x /usr/sbin/clickhouse-server ] && SERVER=/usr/sbin/clickhouse-server
if [ -z "$SERVER" ]; then
  echo "Installing ClickHouse from Debian packages (apt-get install clickhouse-server clickhouse-client)..."
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
  SERVER=/usr/sbin/clickhouse-server
fi

DIR="$ROOT/var/clickhouse"
mkdir -p "$DIR/data" "$DIR/tmp" "$DIR/user_files" "$DIR/format_schemas"
cat > "$DIR/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
cat > "$DIR/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$DIR/server.log</log><errorlog>$DIR/server.err.log</errorlog><console>0</console></logger>
  <tcp_port>9000</tcp_port>
  <http_port>8123</http_port>
  <listen_host>127.0.0.1</listen_host>
  <path>$DIR/data/</path>
  <tmp_path>$DIR/tmp/</tmp_path>
  <user_files_path>$DIR/user_files/</user_files_path>
  <format_schema_path>$DIR/format_schemas/</format_schema_path>
  <users_config>$DIR/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
XML
echo "Starting ClickHouse ($("$SERVER" --version 2>/dev/null | head -1 || echo clickhouse-server)) with its files in var/clickhouse..."
nohup "$SERVER" --config-file="$DIR/config.xml" >"$DIR/stdout.log" 2>&1 &
echo $! > "$DIR/pid"
for _ in $(seq 1 120); do
  if answers; then
    echo "ClickHouse is up on 127.0.0.1:9000 (pid $(cat "$DIR/pid"); stop it with: kill \$(cat var/clickhouse/pid))"
    exit 0
  fi
  sleep 0.5
done
echo "ClickHouse did not start; see $DIR/server.err.log:" >&2
tail -20 "$DIR/server.err.log" >&2 || true
exit 1
