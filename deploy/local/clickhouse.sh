# shellcheck shell=bash
# ClickHouse from Debian (bookworm ships 18.16.1), run as a plain background
# process on 127.0.0.1 (native 9000, HTTP 8123) with everything under the state
# dir. Sourced by deploy/local/stack after lib.sh.

CLICKHOUSE_HOME="$STATE_DIR/clickhouse"
CLICKHOUSE_ETC="$CLICKHOUSE_HOME/etc"
CLICKHOUSE_CONFIG="$CLICKHOUSE_ETC/config.xml"
CLICKHOUSE_PID="$CLICKHOUSE_HOME/clickhouse.pid"
CLICKHOUSE_LOGS="$STATE_DIR/logs/clickhouse"
CLICKHOUSE_LOG="$CLICKHOUSE_LOGS/clickhouse-server.log"
CLICKHOUSE_ERR="$CLICKHOUSE_LOGS/clickhouse-server.err.log"
CLICKHOUSE_PORT=9000
CLICKHOUSE_HTTP_PORT=8123

clickhouse_install() {
	apt_install clickhouse-server clickhouse-client
	if [[ " ${APT_INSTALLED[*]} " == *" clickhouse-server "* ]]; then
		boot_service_off clickhouse-server
	fi
}

clickhouse_write_config() {
	local d
	for d in data tmp user_files format_schemas; do
		mkdir -p "$CLICKHOUSE_HOME/$d"
	done
	mkdir -p "$CLICKHOUSE_ETC" "$CLICKHOUSE_LOGS"
	# Regenerated on every start; /etc/clickhouse-server is left as the package ships it.
	cat >"$CLICKHOUSE_CONFIG" <<EOF
<?xml version="1.0"?>
<!-- Written by deploy/local/stack on each start; edit deploy/local/clickhouse.sh instead. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$CLICKHOUSE_LOG</log>
        <errorlog>$CLICKHOUSE_ERR</errorlog>
        <size>50M</size>
        <count>3</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$CLICKHOUSE_PORT</tcp_port>
    <http_port>$CLICKHOUSE_HTTP_PORT</http_port>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$CLICKHOUSE_HOME/data/</path>
    <tmp_path>$CLICKHOUSE_HOME/tmp/</tmp_path>
    <user_files_path>$CLICKHOUSE_HOME/user_files/</user_files_path>
    <format_schema_path>$CLICKHOUSE_HOME/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
EOF
	cat >"$CLICKHOUSE_ETC/users.xml" <<'EOF'
<?xml version="1.0"?>
<!-- Written by deploy/local/stack on each start. User "default", no password, loopback only. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

clickhouse_launch() {
	if pid_matches "$CLICKHOUSE_PID" "$CLICKHOUSE_CONFIG"; then
		step "clickhouse: already running (pid $(<"$CLICKHOUSE_PID"))"
		return 0
	fi
	local bin
	bin=$(command -v clickhouse-server || { [[ -x /usr/sbin/clickhouse-server ]] && echo /usr/sbin/clickhouse-server; }) ||
		die "clickhouse: clickhouse-server not installed, run: $STACK_CTL install clickhouse"
	local p
	for p in "$CLICKHOUSE_PORT" "$CLICKHOUSE_HTTP_PORT"; do
		if port_open "$p"; then
			die "clickhouse: port $p on 127.0.0.1 is already in use by another process: $(port_owner "$p")"
		fi
	done
	clickhouse_write_config
	step "clickhouse: starting on 127.0.0.1:$CLICKHOUSE_PORT (http :$CLICKHOUSE_HTTP_PORT, data $CLICKHOUSE_HOME/data)"
	# The server resolves users.xml relative to the config file's directory.
	launch "$CLICKHOUSE_PID" "$CLICKHOUSE_LOGS/stdout.log" "$bin" --config-file="$CLICKHOUSE_CONFIG"
}

clickhouse_query() {
	clickhouse-client --host 127.0.0.1 --port "$CLICKHOUSE_PORT" --query "$1"
}

clickhouse_check() {
	[[ $(clickhouse_query 'SELECT 1') == 1 ]]
}

clickhouse_wait() {
	if ! pid_matches "$CLICKHOUSE_PID" "$CLICKHOUSE_CONFIG"; then
		die "clickhouse: not running (start it: $STACK_CTL start clickhouse)" "$CLICKHOUSE_ERR" "$CLICKHOUSE_LOGS/stdout.log"
	fi
	step "clickhouse: waiting for SELECT 1 on 127.0.0.1:$CLICKHOUSE_PORT"
	wait_for clickhouse 60 "$CLICKHOUSE_PID" "$CLICKHOUSE_CONFIG" "$CLICKHOUSE_ERR" clickhouse_check
	step "clickhouse: ready (version $(clickhouse_query 'SELECT version()'))"
}

clickhouse_stop() {
	stop_pid clickhouse "$CLICKHOUSE_PID" "$CLICKHOUSE_CONFIG"
}

clickhouse_status() {
	if pid_matches "$CLICKHOUSE_PID" "$CLICKHOUSE_CONFIG"; then
		echo "clickhouse: running, pid $(<"$CLICKHOUSE_PID"), 127.0.0.1:$CLICKHOUSE_PORT (http :$CLICKHOUSE_HTTP_PORT), data $CLICKHOUSE_HOME/data, log $CLICKHOUSE_LOG"
		return 0
	fi
	echo "clickhouse: stopped"
	return 3
}
