# shellcheck shell=bash
# Apache Kafka 4.x, single KRaft node (broker+controller), from Maven Central jars.
# Sourced by deploy/local/stack after lib.sh.

KAFKA_LIBS="$CACHE_DIR/kafka-libs"
KAFKA_POM="$LOCAL_DIR/kafka/pom.xml"
KAFKA_READY_BIN="$CACHE_DIR/bin/kafkaready"
KAFKA_HOME="$STATE_DIR/kafka"
KAFKA_DATA="$KAFKA_HOME/data"
KAFKA_LOGS="$STATE_DIR/logs/kafka" # outside log.dirs: the broker parses every dir there as a partition
KAFKA_PID="$KAFKA_HOME/kafka.pid"
KAFKA_PROPS="$KAFKA_HOME/server.properties"
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093

kafka_java_opts() {
	# 512m: the log cleaner alone takes its dedupe buffer on heap (32 MiB here).
	printf '%s\n' -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
		-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
		-XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
		"-Dlog4j2.configurationFile=$LOCAL_DIR/kafka/log4j2.properties" \
		"-Dkafka.logs.dir=$KAFKA_LOGS"
}

kafka_install() {
	command -v java >/dev/null || die "kafka: java not found on PATH (Java 17+ is needed)"
	command -v mvn >/dev/null || die "kafka: mvn not found on PATH"
	command -v go >/dev/null || die "kafka: go not found on PATH (the readiness check is Go)"
	local javaver
	javaver=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
	if [[ -n $javaver && ${javaver%%.*} -lt 17 ]]; then
		die "kafka: java $javaver on PATH, Kafka 4.x needs 17+"
	fi

	# The pom's hash marks which jar set is in the cache, so editing the pom
	# (a version bump) refreshes it and nothing else does.
	local want have=""
	want=$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)
	[[ -f $KAFKA_LIBS/.pom.sha256 ]] && have=$(<"$KAFKA_LIBS/.pom.sha256")
	if [[ $want == "$have" ]] && compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null; then
		step "kafka: jars already in $KAFKA_LIBS ($(basename "$(compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar")" .jar))"
	else
		local tmp="$CACHE_DIR/kafka-libs.tmp" log="$STATE_DIR/logs/kafka-mvn.log"
		mkdir -p "$CACHE_DIR" "$STATE_DIR/logs"
		rm -rf "$tmp"
		step "kafka: fetching broker jars with Maven ($(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM"))"
		if ! (cd "$LOCAL_DIR/kafka" && mvn -B -q dependency:copy-dependencies \
			-DincludeScope=runtime -DoutputDirectory="$tmp") >"$log" 2>&1; then
			die "kafka: mvn dependency:copy-dependencies failed" "$log"
		fi
		local j
		for j in kafka_2.13 kafka-server kafka-raft log4j-slf4j-impl log4j-core slf4j-api scala-library; do
			compgen -G "$tmp/$j-[0-9]*.jar" >/dev/null || die "kafka: $j jar missing after Maven copy" "$log"
		done
		echo "$want" >"$tmp/.pom.sha256"
		rm -rf "$KAFKA_LIBS"
		mv "$tmp" "$KAFKA_LIBS"
		step "kafka: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $KAFKA_LIBS"
	fi

	step "kafka: building readiness check $KAFKA_READY_BIN"
	mkdir -p "$(dirname "$KAFKA_READY_BIN")"
	local blog="$STATE_DIR/logs/kafkaready-build.log"
	mkdir -p "$STATE_DIR/logs"
	if ! (cd "$REPO_ROOT" && go build -o "$KAFKA_READY_BIN" ./deploy/local/kafkaready) >"$blog" 2>&1; then
		die "kafka: go build ./deploy/local/kafkaready failed" "$blog"
	fi
}

kafka_write_config() {
	mkdir -p "$KAFKA_HOME" "$KAFKA_DATA" "$KAFKA_LOGS"
	# Regenerated on every start: the settings live in this script, the data in $KAFKA_DATA.
	cat >"$KAFKA_PROPS" <<EOF
# Written by deploy/local/stack on each start; edit deploy/local/kafka.sh instead.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA

# Topics are created explicitly by the code under test (kadm), never by a typo.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1

# One node: internal topics cannot have RF 3, and few partitions keep
# coordinator lookups and start-up quick.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1

# Tests join groups constantly; waiting for more members only slows them.
group.initial.rebalance.delay.ms=0

# A 2-core machine: fewer threads, smaller cleaner buffer (fits -Xmx512m).
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=33554432
EOF
}

kafka_format_if_needed() {
	if [[ -f $KAFKA_DATA/meta.properties ]]; then
		return 0
	fi
	# A half-formatted dir (interrupted first start) is empty of data: start over.
	rm -rf "$KAFKA_DATA"
	mkdir -p "$KAFKA_DATA"
	local log="$KAFKA_LOGS/format.log" cid
	mapfile -t jopts < <(kafka_java_opts)
	cid=$(java "${jopts[@]}" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>>"$log") ||
		die "kafka: StorageTool random-uuid failed" "$log"
	step "kafka: formatting storage $KAFKA_DATA (cluster id $cid)"
	java "${jopts[@]}" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format --standalone \
		-t "$cid" -c "$KAFKA_PROPS" >>"$log" 2>&1 ||
		die "kafka: StorageTool format failed" "$log" "$KAFKA_LOGS/server.log"
}

kafka_launch() {
	if pid_matches "$KAFKA_PID" "$KAFKA_PROPS"; then
		step "kafka: already running (pid $(<"$KAFKA_PID"))"
		return 0
	fi
	compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null || die "kafka: jars missing, run: $STACK_CTL install kafka"
	local p
	for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
		if port_open "$p"; then
			die "kafka: port $p on 127.0.0.1 is already in use by another process: $(port_owner "$p")"
		fi
	done
	kafka_write_config
	kafka_format_if_needed
	mapfile -t jopts < <(kafka_java_opts)
	step "kafka: starting broker on 127.0.0.1:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT, data $KAFKA_DATA)"
	launch "$KAFKA_PID" "$KAFKA_LOGS/stdout.log" \
		java "${jopts[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS"
}

kafka_wait() {
	if ! pid_matches "$KAFKA_PID" "$KAFKA_PROPS"; then
		die "kafka: not running (start it: $STACK_CTL start kafka)" "$KAFKA_LOGS/server.log" "$KAFKA_LOGS/stdout.log"
	fi
	[[ -x $KAFKA_READY_BIN ]] || kafka_install
	step "kafka: waiting for 127.0.0.1:$KAFKA_PORT to answer metadata requests"
	wait_for kafka 120 "$KAFKA_PID" "$KAFKA_PROPS" "$KAFKA_LOGS/server.log" port_open "$KAFKA_PORT"
	wait_for kafka 60 "$KAFKA_PID" "$KAFKA_PROPS" "$KAFKA_LOGS/server.log" \
		"$KAFKA_READY_BIN" -brokers "127.0.0.1:$KAFKA_PORT" -timeout 5s
	step "kafka: ready ($("$KAFKA_READY_BIN" -brokers "127.0.0.1:$KAFKA_PORT" -timeout 5s 2>&1))"
}

kafka_stop() {
	stop_pid kafka "$KAFKA_PID" "$KAFKA_PROPS"
}

kafka_status() {
	if pid_matches "$KAFKA_PID" "$KAFKA_PROPS"; then
		if port_open "$KAFKA_PORT"; then
			echo "kafka: running, pid $(<"$KAFKA_PID"), 127.0.0.1:$KAFKA_PORT, data $KAFKA_DATA, log $KAFKA_LOGS/server.log"
		else
			echo "kafka: starting, pid $(<"$KAFKA_PID"), port $KAFKA_PORT not open yet"
		fi
		return 0
	fi
	echo "kafka: stopped"
	return 3
}
