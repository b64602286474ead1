#!/usr/bin/env bash
# Base-image helpers for bench/run. Sourced, not executed.
#   mkbase_layout ROOTFS LAYOUT TAG CMD...   rootfs dir -> OCI image layout (umoci)
#   mkbase_busybox LAYOUT                     /bin/busybox (busybox-static) -> OCI layout
#   mkbase_debian_node LAYOUT                 debootstrap bookworm + nodejs npm -> OCI layout (slow, cached by caller)
#   push_layout LAYOUT TAG REF                skopeo copy to the loopback registry (plain http)

mkbase_layout() {
  local rootfs=$1 layout=$2 tag=$3; shift 3
  rm -rf "$layout"
  umoci init --layout "$layout" >/dev/null
  umoci new --image "$layout:$tag" >/dev/null
  # umoci insert copies the directory tree (owners, modes, symlinks) into one layer.
  umoci insert --image "$layout:$tag" "$rootfs" / >/dev/null
  local cfg=(--config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
             --architecture amd64 --os linux)
  local c; for c in "$@"; do cfg+=(--config.cmd "$c"); done
  umoci config --image "$layout:$tag" "${cfg[@]}" >/dev/null
  umoci gc --layout "$layout" >/dev/null
}

mkbase_busybox() {
  local layout=$1 tmp
  [ -x /bin/busybox ] || { echo "busybox-static not installed (apt-get install busybox-static)" >&2; return 1; }
  tmp=$(mktemp -d)
  mkdir -p "$tmp"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,home,var,dev,proc,sys}
  chmod 1777 "$tmp/tmp"
  cp /bin/busybox "$tmp/bin/busybox"
  # One symlink per applet, at the path busybox reports for it.
  local a
  while read -r a; do
    [ "$a" = /bin/busybox ] && continue
    mkdir -p "$tmp$(dirname "$a")"
    ln -sf /bin/busybox "$tmp$a"
  done < <(/bin/busybox --list-full | sed 's|^|/|')
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$tmp/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$tmp/etc/group"
  mkbase_layout "$tmp" "$layout" latest /bin/sh
  rm -rf "$tmp"
}

mkbase_debian_node() {
  local layout=$1 tmp mirror
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
  # Use the mirror this machine's apt is configured with.
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
  [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  mirror=${mirror:-http://deb.debian.org/debian}
  tmp=$(mktemp -d /var/tmp/debian-node.XXXXXX)
  debootstrap --variant=minbase bookworm "$tmp" "$mirror" >&2
  mount --bind /proc "$tmp/proc"
  cp /etc/resolv.conf "$tmp/etc/resolv.conf"
  chroot "$tmp" /bin/sh -c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*' >&2
  local rc=$?
  umount "$tmp/proc"
  : > "$tmp/etc/resolv.conf"
  if [ $rc -eq 0 ]; then mkbase_layout "$tmp" "$layout" bookworm /bin/bash; fi
  rm -rf "$tmp"
  return $rc
}

push_layout() {
  local layout=$1 tag=$2 ref=$3
  skopeo copy -q --dest-tls-verify=false "oci:$layout:$tag" "docker://$ref" >/dev/null
}
