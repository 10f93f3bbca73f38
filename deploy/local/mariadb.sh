# shellcheck shell=bash
# MariaDB from Debian, run as a plain background process on 127.0.0.1:3306 with
# its datadir under the state dir. Sourced by deploy/local/stack after lib.sh.

MARIADB_HOME="$STATE_DIR/mariadb"
MARIADB_DATA="$MARIADB_HOME/data"
MARIADB_CNF="$MARIADB_HOME/my.cnf"
MARIADB_SOCK="$MARIADB_HOME/mysqld.sock"
MARIADB_PID="$MARIADB_HOME/mariadbd.pid"
MARIADB_LOGS="$STATE_DIR/logs/mariadb"
MARIADB_ERR="$MARIADB_LOGS/error.log"
MARIADB_PORT=3306
MARIADB_USER=pushlane
MARIADB_PASSWORD=pushlane

mariadb_install() {
	apt_install mariadb-server mariadb-client
	if [[ " ${APT_INSTALLED[*]} " == *" mariadb-server "* ]]; then
		boot_service_off mariadb
	fi
}

mariadb_bin() {
	local b
	for b in mariadbd mysqld; do
		if command -v "$b" >/dev/null 2>&1; then
			command -v "$b"
			return 0
		fi
		[[ -x /usr/sbin/$b ]] && { echo "/usr/sbin/$b"; return 0; }
	done
	return 1
}

mariadb_write_config() {
	mkdir -p "$MARIADB_HOME" "$MARIADB_DATA" "$MARIADB_LOGS" "$MARIADB_HOME/tmp"
	# Regenerated on every start. --defaults-file keeps /etc/mysql out of it.
	cat >"$MARIADB_CNF" <<EOF
# Written by deploy/local/stack on each start; edit deploy/local/mariadb.sh instead.
[mysqld]
user=root
datadir=$MARIADB_DATA
tmpdir=$MARIADB_HOME/tmp
socket=$MARIADB_SOCK
pid-file=$MARIADB_HOME/mariadbd.server.pid
bind-address=127.0.0.1
port=$MARIADB_PORT
log-error=$MARIADB_ERR
skip-name-resolve
character-set-server=utf8mb4
collation-server=utf8mb4_unicode_ci
default-time-zone=+00:00
max_connections=500
innodb_buffer_pool_size=256M
innodb_log_file_size=64M
# Test data is disposable: trade crash durability for speed.
innodb_flush_log_at_trx_commit=2
innodb_doublewrite=0
skip-log-bin

[client]
socket=$MARIADB_SOCK
EOF
}

mariadb_launch() {
	if pid_matches "$MARIADB_PID" "$MARIADB_CNF"; then
		step "mariadb: already running (pid $(<"$MARIADB_PID"))"
		return 0
	fi
	local bin
	bin=$(mariadb_bin) || die "mariadb: mariadbd not installed, run: $STACK_CTL install mariadb"
	if port_open "$MARIADB_PORT"; then
		die "mariadb: port $MARIADB_PORT on 127.0.0.1 is already in use by another process: $(port_owner "$MARIADB_PORT")"
	fi
	mariadb_write_config
	# The marker is written only once the installer succeeded: a data
	# directory it left half made (killed, disk full) is made again, not
	# handed to a server that cannot open its privilege tables.
	local initialised="$MARIADB_DATA/.deploy-local-initialised"
	if [[ -d $MARIADB_DATA/mysql && ! -e $initialised && -e $MARIADB_DATA/mysql/global_priv.frm ]]; then
		touch "$initialised" # made before the marker existed, and complete
	fi
	if [[ ! -e $initialised ]]; then
		step "mariadb: initialising datadir $MARIADB_DATA"
		local installer
		installer=$(command -v mariadb-install-db || command -v mysql_install_db) ||
			die "mariadb: mariadb-install-db not found"
		rm -rf "$MARIADB_DATA"
		mkdir -p "$MARIADB_DATA"
		"$installer" --defaults-file="$MARIADB_CNF" --user=root --skip-test-db \
			--auth-root-authentication-method=socket >"$MARIADB_LOGS/install-db.log" 2>&1 ||
			die "mariadb: mariadb-install-db failed" "$MARIADB_LOGS/install-db.log" "$MARIADB_ERR"
		touch "$initialised"
	fi
	step "mariadb: starting on 127.0.0.1:$MARIADB_PORT (datadir $MARIADB_DATA)"
	launch "$MARIADB_PID" "$MARIADB_LOGS/stdout.log" "$bin" --defaults-file="$MARIADB_CNF"
}

mariadb_root() {
	mariadb --no-defaults --socket="$MARIADB_SOCK" -uroot --batch --skip-column-names "$@"
}

mariadb_tcp_check() {
	local out
	out=$(mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P"$MARIADB_PORT" \
		-u"$MARIADB_USER" -p"$MARIADB_PASSWORD" --batch --skip-column-names \
		-e 'SELECT CONCAT(VERSION(), " ", CURRENT_USER())') || return 1
	echo "$out"
}

mariadb_wait() {
	if ! pid_matches "$MARIADB_PID" "$MARIADB_CNF"; then
		die "mariadb: not running (start it: $STACK_CTL start mariadb)" "$MARIADB_ERR"
	fi
	step "mariadb: waiting for the server socket"
	wait_for mariadb 60 "$MARIADB_PID" "$MARIADB_CNF" "$MARIADB_ERR" mariadb_root -e 'SELECT 1'
	# Idempotent on every wait, so a datadir from an older script gets the user too.
	step "mariadb: ensuring user '$MARIADB_USER' with ALL PRIVILEGES"
	mariadb_root -e "
		CREATE USER IF NOT EXISTS '$MARIADB_USER'@'%' IDENTIFIED BY '$MARIADB_PASSWORD';
		CREATE USER IF NOT EXISTS '$MARIADB_USER'@'localhost' IDENTIFIED BY '$MARIADB_PASSWORD';
		ALTER USER '$MARIADB_USER'@'%' IDENTIFIED BY '$MARIADB_PASSWORD';
		ALTER USER '$MARIADB_USER'@'localhost' IDENTIFIED BY '$MARIADB_PASSWORD';
		GRANT ALL PRIVILEGES ON *.* TO '$MARIADB_USER'@'%' WITH GRANT OPTION;
		GRANT ALL PRIVILEGES ON *.* TO '$MARIADB_USER'@'localhost' WITH GRANT OPTION;
		FLUSH PRIVILEGES;" 2>"$MARIADB_LOGS/grant.log" ||
		die "mariadb: creating user $MARIADB_USER failed" "$MARIADB_LOGS/grant.log" "$MARIADB_ERR"
	wait_for mariadb 30 "$MARIADB_PID" "$MARIADB_CNF" "$MARIADB_ERR" mariadb_tcp_check
	step "mariadb: ready ($(mariadb_tcp_check))"
}

mariadb_stop() {
	stop_pid mariadb "$MARIADB_PID" "$MARIADB_CNF"
}

mariadb_status() {
	if pid_matches "$MARIADB_PID" "$MARIADB_CNF"; then
		echo "mariadb: running, pid $(<"$MARIADB_PID"), 127.0.0.1:$MARIADB_PORT, datadir $MARIADB_DATA, log $MARIADB_ERR"
		return 0
	fi
	echo "mariadb: stopped"
	return 3
}
