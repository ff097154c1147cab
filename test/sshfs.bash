# sshfs.bash: a throwaway sshd on 127.0.0.1 plus sshfs mounts through it,
# for tests that reach an mqfs mount "remotely" (source it; bash, set -u safe).
#
#   sshd_start DIR                 sshd with every file in DIR; exports
#                                  SSHD_PORT and SSHD_DIR
#   sshfs_mount REMOTE LOCAL [-o OPTS]...  mount REMOTE (absolute) at LOCAL
#   sshfs_umount LOCAL             fusermount3 -uz, wait until gone
#   sshd_stop DIR                  kill only the sshd whose PID is DIR/sshd.pid
#
# Nothing here reads or writes /etc/ssh, ~/.ssh or a system sshd.
#
# Environment:
#   SSHD_BIN        sshd (absolute: sshd refuses to re-exec from a relative
#                   path; /usr/sbin is often not in a non-root PATH)
#   SSHFS_TIMEOUT   seconds any single command here may take
#
# Why these sshfs options (measured with a logging FUSE fs as the remote,
# sshfs 3.7.3 / OpenSSH 9.2):
#   sshfs_sync      without it write() returns before the server answered;
#                   a remote write error shows only at the next fsync() or
#                   close(), as EIO. With it write() itself fails (always EIO:
#                   sshfs maps any failed SFTP write to EIO)
#   direct_io       reads skip the local page cache and are not cut at the
#                   remote st_size (0, stale or wrong), so a reader sees
#                   content generated at open time in full
#   dir_cache=no    else sshfs serves stat from its own cache for 20 s
#   attr_timeout=0,entry_timeout=0,negative_timeout=0
#                   else the local kernel caches attrs/names for 1 s
#   max_conns=1     the default, stated: one SFTP channel, so the remote
#                   sees requests in the order they were issued
# SFTP has few status codes: remote errors arrive as EPERM (most, e.g.
# ESTALE, EIO, EROFS), EACCES (EPERM/EACCES), EBADMSG (EINVAL), ENOENT.
# ServerAlive*: if sshd dies, I/O fails within ~15 s instead of hanging.

: "${SSHD_BIN:=/usr/sbin/sshd}"
: "${SSHFS_TIMEOUT:=10}"

SSHFS_OPTS=sshfs_sync,direct_io,dir_cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0,max_conns=1

# _sshd_alive PID: kill -0 alone is true for a zombie (an unreaped child)
_sshd_alive() {
	[[ -r /proc/$1/status ]] &&
		[[ $(command awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) != Z ]]
}

# sshd_start DIR: generate keys and config in DIR, start sshd -D on a free
# port of 127.0.0.1 and wait until it says it listens.
sshd_start() {
	local dir port try deadline pid
	dir=$(realpath -m "$1") # sshd wants absolute paths in its config
	command mkdir -p "$dir" || return 1
	# privilege separation dir; only needed (and creatable) as root
	[[ -d /run/sshd ]] || command mkdir -p -m 0755 /run/sshd 2>/dev/null || :
	command rm -f "$dir/host_key" "$dir/host_key.pub" "$dir/user_key" "$dir/user_key.pub"
	timeout "$SSHFS_TIMEOUT" ssh-keygen -q -t ed25519 -N '' -C mqfs-test-host -f "$dir/host_key" &&
		timeout "$SSHFS_TIMEOUT" ssh-keygen -q -t ed25519 -N '' -C mqfs-test-user -f "$dir/user_key" ||
		return 1
	command cp "$dir/user_key.pub" "$dir/authorized_keys" || return 1

	# A probe of a port is racy (someone may bind it before sshd does), so
	# rather try a random port and retry if this sshd dies before listening.
	for ((try = 0; try < 10; try++)); do
		port=$((20000 + RANDOM % 40000))
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue # taken
		command cat >"$dir/sshd_config" <<-EOF
			Port $port
			ListenAddress 127.0.0.1
			HostKey $dir/host_key
			PidFile $dir/sshd.pid
			AuthorizedKeysFile $dir/authorized_keys
			AuthenticationMethods publickey
			PubkeyAuthentication yes
			PasswordAuthentication no
			KbdInteractiveAuthentication no
			PermitRootLogin yes
			StrictModes no
			UsePAM no
			UseDNS no
			PrintMotd no
			Subsystem sftp internal-sftp
		EOF
		command rm -f "$dir/sshd.pid"
		# -D: no fork, so $! is sshd itself; -e: log to stderr (our file).
		# 3>&- 4>&-: bats waits for any child still holding its fds.
		"$SSHD_BIN" -D -e -f "$dir/sshd_config" >>"$dir/sshd.log" 2>&1 </dev/null 3>&- 4>&- &
		pid=$!
		echo "$pid" >"$dir/sshd.pid" # sshd writes the same PID here too
		deadline=$((SECONDS + 10))
		# "Server listening" is logged after bind+listen: ready, and ours
		until command grep -q "Server listening on 127.0.0.1 port $port" "$dir/sshd.log"; do
			_sshd_alive "$pid" || break
			if ((SECONDS >= deadline)); then
				kill "$pid" 2>/dev/null
				echo "sshd_start: sshd did not listen within 10s; log:" >&2
				command cat "$dir/sshd.log" >&2
				return 1
			fi
			sleep 0.05
		done
		if _sshd_alive "$pid"; then
			export SSHD_PORT=$port SSHD_DIR=$dir
			return 0
		fi
		wait "$pid" 2>/dev/null # died (port lost to a race?): reap, retry
	done
	echo "sshd_start: sshd failed to start; log:" >&2
	command cat "$dir/sshd.log" >&2
	return 1
}

# sshfs_mount REMOTE LOCAL [-o OPTS]...: mount REMOTE of 127.0.0.1 on LOCAL
# through the sshd of sshd_start. Extra options come after ours and win.
sshfs_mount() {
	local remote=$1 mnt=$2 deadline
	shift 2
	command mkdir -p "$mnt" || return 1
	# -F /dev/null: ignore any ssh_config of the user running the tests.
	# sshfs daemonizes once the SFTP session is up, so timeout bounds
	# connecting and authenticating only.
	timeout "$SSHFS_TIMEOUT" sshfs -F /dev/null \
		-o "port=$SSHD_PORT,IdentityFile=$SSHD_DIR/user_key,IdentitiesOnly=yes" \
		-o StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes \
		-o LogLevel=ERROR,ServerAliveInterval=5,ServerAliveCountMax=3 \
		-o "$SSHFS_OPTS" "$@" \
		"$(id -un)@127.0.0.1:$remote" "$mnt" \
		</dev/null 2>>"$SSHD_DIR/sshfs.log" 3>&- 4>&- || {
		echo "sshfs_mount: sshfs $remote $mnt failed; log:" >&2
		command cat "$SSHD_DIR/sshfs.log" >&2
		return 1
	}
	deadline=$((SECONDS + SSHFS_TIMEOUT))
	until timeout 5 mountpoint -q "$mnt"; do
		if ((SECONDS >= deadline)); then
			echo "sshfs_mount: $mnt not mounted after ${SSHFS_TIMEOUT}s" >&2
			return 1
		fi
		sleep 0.05
	done
}

# sshfs_umount LOCAL: lazy unmount (works even if the link is dead); sshfs
# then exits on its own.
sshfs_umount() {
	local mnt=$1 deadline=$((SECONDS + SSHFS_TIMEOUT))
	timeout "$SSHFS_TIMEOUT" fusermount3 -uz "$mnt" 2>/dev/null || :
	# mountinfo, not mountpoint(1): stat on a dying FUSE mount can block
	while command awk -v m="$(realpath -m "$mnt")" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; do
		if ((SECONDS >= deadline)); then
			echo "sshfs_umount: $mnt still mounted" >&2
			return 1
		fi
		sleep 0.05
	done
}

# sshd_stop DIR: stop our sshd (the PID in DIR/sshd.pid, nothing else) and
# wait for it. Live sessions keep their own sshd children until sshfs ends.
sshd_stop() {
	local dir=$1 pid deadline
	[[ -s $dir/sshd.pid ]] || return 0
	pid=$(<"$dir/sshd.pid")
	kill "$pid" 2>/dev/null || { command rm -f "$dir/sshd.pid"; return 0; }
	deadline=$((SECONDS + SSHFS_TIMEOUT))
	while _sshd_alive "$pid"; do
		if ((SECONDS >= deadline)); then
			kill -9 "$pid" 2>/dev/null
			break
		fi
		sleep 0.05
	done
	wait "$pid" 2>/dev/null # reaps it if it is our child; harmless if not
	command rm -f "$dir/sshd.pid"
}
