# shellcheck shell=bash
# Helpers shared by the deploy/local scripts. Sourced, never executed.
#
# Every step prints one line to stderr ("[local] ..."), so that `env` can keep
# stdout for the export lines and CI logs show what happened in order.

LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$LOCAL_DIR/../.." && pwd -P)"
CACHE_DIR="$LOCAL_DIR/.cache"
STATE_DIR="${PUSHLANE_LOCAL_STATE:-/var/tmp/pushlane-local}"
STACK_CTL="$LOCAL_DIR/stack"

step() { printf '[local] %s\n' "$*" >&2; }
warn() { printf '[local] WARNING: %s\n' "$*" >&2; }

# die MESSAGE [LOGFILE...]: prints the message and the tail of each log that exists.
die() {
	local msg=$1
	shift
	printf '[local] FAILED: %s\n' "$msg" >&2
	local f
	for f in "$@"; do
		if [[ -s $f ]]; then
			printf '[local] --- last 40 lines of %s ---\n' "$f" >&2
			tail -n 40 "$f" >&2
			printf '[local] --- end of %s ---\n' "$f" >&2
		fi
	done
	exit 1
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# port_owner PORT: one line naming the listening process, if ss can tell.
port_owner() {
	if command -v ss >/dev/null 2>&1; then
		ss -Hltnp "sport = :$1" 2>/dev/null | head -n 1
	fi
}

# pid_matches PIDFILE PATTERN: true when the pid in PIDFILE is alive and its
# command line contains PATTERN (so a recycled pid is never mistaken for ours).
pid_matches() {
	local pidfile=$1 pattern=$2 pid
	[[ -s $pidfile ]] || return 1
	pid=$(<"$pidfile")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/cmdline ]] || return 1
	# zombies keep their cmdline empty; treat them as gone
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pattern"
}

# stop_pid NAME PIDFILE PATTERN: SIGTERM, wait up to 30 s, then SIGKILL.
stop_pid() {
	local name=$1 pidfile=$2 pattern=$3 pid i
	if ! pid_matches "$pidfile" "$pattern"; then
		step "$name: not running"
		rm -f "$pidfile"
		return 0
	fi
	pid=$(<"$pidfile")
	step "$name: stopping pid $pid (SIGTERM)"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 300; i++)); do
		pid_matches "$pidfile" "$pattern" || break
		sleep 0.1
	done
	if pid_matches "$pidfile" "$pattern"; then
		warn "$name: pid $pid still alive after 30 s, sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			pid_matches "$pidfile" "$pattern" || break
			sleep 0.1
		done
		# Still there after SIGKILL (stuck in the kernel): say so, and keep
		# the pid file, rather than report a stop the next start's port
		# check would contradict.
		pid_matches "$pidfile" "$pattern" && die "$name: pid $pid survived SIGKILL; its pid file $pidfile is kept"
	fi
	rm -f "$pidfile"
	step "$name: stopped"
}

# launch PIDFILE LOGFILE CMD...: starts CMD detached (own session, no stdin,
# lock fd closed) and records its pid. It returns once the child has exec'd
# CMD: until then /proc/<pid>/cmdline is this script's own, and a
# pid_matches right after launch (the *_wait functions) would call the
# service not running (seen in about one launch in six).
launch() {
	local pidfile=$1 logfile=$2 pid i own cmd
	shift 2
	mkdir -p "$(dirname "$logfile")"
	setsid "$@" </dev/null >>"$logfile" 2>&1 9>&- &
	pid=$!
	echo "$pid" >"$pidfile"
	own=$(tr '\0' ' ' </proc/$$/cmdline)
	for ((i = 0; i < 100; i++)); do
		[[ -r /proc/$pid/cmdline ]] || return 0
		# Empty while the exec is under way.
		cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)
		[[ -n $cmd && $cmd != "$own" ]] && return 0
		sleep 0.05
	done
}

# wait_for NAME SECONDS PIDFILE PATTERN LOG CMD...: polls CMD until it succeeds;
# fails early when the process died, and after SECONDS.
wait_for() {
	local name=$1 secs=$2 pidfile=$3 pattern=$4 log=$5
	shift 5
	local deadline=$((SECONDS + secs))
	while ((SECONDS < deadline)); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		if ! pid_matches "$pidfile" "$pattern"; then
			die "$name: process exited while waiting for it to become ready" "$log"
		fi
		sleep 0.5
	done
	local out
	out=$("$@" 2>&1 | tail -n 5) || true
	die "$name: not ready after ${secs}s (last check said: ${out:-nothing})" "$log"
}

# apt_install PKG...: installs Debian packages that are missing, without
# letting their maintainer scripts start services (we start them ourselves).
# APT_INSTALLED lists what it installed this time.
APT_INSTALLED=()
apt_install() {
	local missing=() p
	for p in "$@"; do
		if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
			missing+=("$p")
		fi
	done
	if ((${#missing[@]} == 0)); then
		step "apt: $* already installed"
		return 0
	fi
	command -v apt-get >/dev/null || die "apt-get not found: cannot install ${missing[*]}"
	local sudo=()
	if ((EUID != 0)); then
		command -v sudo >/dev/null || die "need root (or sudo) to install ${missing[*]}"
		sudo=(sudo)
	fi
	# The policy that keeps maintainer scripts from starting services is
	# marked as ours, so one left behind by a run killed mid-install is
	# recognised (and removed) by the next run instead of blocking every
	# service start on the machine.
	local policy=/usr/sbin/policy-rc.d added_policy=0 mark='# deploy/local apt_install'
	if [[ ! -e $policy ]] || grep -qF -- "$mark" "$policy" 2>/dev/null; then
		printf '#!/bin/sh\n%s\nexit 101\n' "$mark" | "${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 755 "$policy"
		added_policy=1
	fi
	local log="$STATE_DIR/logs/apt.log"
	mkdir -p "$STATE_DIR/logs"
	# A mirror that fails once should not fail a fresh machine's CI.
	local retries=(-o Acquire::Retries=5)
	step "apt: updating package lists"
	if ! "${sudo[@]}" apt-get update -q "${retries[@]}" >>"$log" 2>&1; then
		((added_policy)) && "${sudo[@]}" rm -f "$policy"
		die "apt-get update failed" "$log"
	fi
	# An install killed earlier leaves dpkg refusing to go on until this.
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive dpkg --configure -a >>"$log" 2>&1 || true
	step "apt: installing ${missing[*]}"
	if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${retries[@]}" \
		--no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"${missing[@]}" >>"$log" 2>&1; then
		((added_policy)) && "${sudo[@]}" rm -f "$policy"
		die "apt-get install ${missing[*]} failed" "$log"
	fi
	((added_policy)) && "${sudo[@]}" rm -f "$policy"
	APT_INSTALLED=("${missing[@]}")
	return 0
}

# boot_service_off NAME: keeps a package's own service from starting at
# boot. The stack runs its own servers on the same ports; after a reboot
# the distribution's would hold them and every later start would fail.
boot_service_off() {
	local name=$1 sudo=()
	((EUID != 0)) && sudo=(sudo)
	if command -v systemctl >/dev/null; then
		"${sudo[@]}" systemctl disable "$name" >/dev/null 2>&1 || true
	fi
	if [[ -e /etc/init.d/$name ]] && command -v update-rc.d >/dev/null; then
		"${sudo[@]}" update-rc.d "$name" disable >/dev/null 2>&1 || true
	fi
	step "$name: the package's own service will not start at boot (deploy/local runs its own)"
}
