#!/usr/bin/env bash
# Install the Debian packages mqfs needs to build and test, if missing.
# As root it installs them; otherwise it says which are missing and fails.
set -euo pipefail

pkgs=(gcc make libfuse3-dev fuse3 libxxhash-dev pkg-config bats inotify-tools
      xxhash attr procps python3 sshfs openssh-server)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "mqfs needs these Debian packages: ${missing[*]}" >&2
	echo "install them: sudo apt-get install ${missing[*]}" >&2
	exit 1
fi
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
